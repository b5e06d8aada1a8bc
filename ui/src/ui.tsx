// Small pieces every screen uses: the error box (an API error is shown in the page,
// naming its field), a loading note, number formatting, and the hook that loads data.

import { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError } from "./api";

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : undefined;
  return (
    <div class="error" role="alert">
      <strong>{e ? `${e.status || ""} ${e.code}`.trim() : "Error"}</strong>
      {": "}
      {e ? e.message : String(error)}
      {e?.field ? <span class="field"> (field: {e.field})</span> : null}
    </div>
  );
}

export function Loading() {
  return <p class="muted" aria-live="polite">Loading…</p>;
}

export function fmt(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  if (Number.isInteger(n)) return n.toLocaleString("en-US");
  return n.toLocaleString("en-US", { maximumFractionDigits: 2 });
}

export function pct(n: number | null | undefined): string {
  return n === null || n === undefined ? "–" : `${(n * 100).toFixed(1)}%`;
}

/** Loads `load()` whenever `key` changes: its value, its error, and whether it runs. */
export function useLoad<T>(key: string, load: () => Promise<T>): { data?: T; error?: unknown; loading: boolean; reload: () => void } {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ data: s.data, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (error) => live && setState({ error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [key, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

export function Field(props: { label: string; children: ComponentChildren }) {
  return (
    <label class="field-label">
      <span>{props.label}</span>
      {props.children}
    </label>
  );
}
