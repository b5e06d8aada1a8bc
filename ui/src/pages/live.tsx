// Live events over the server's event stream (Server-Sent Events, no polling): newest
// first, with pause (events keep arriving and wait), a filter by event name and
// distinct id, and a row that opens the event's properties and its person.

import { useEffect, useRef, useState } from "preact/hooks";
import { Project, StoredEvent } from "../api";
import { setParams, useRoute } from "../route";
import { Field } from "../ui";
import { EventTable } from "./events";

const KEEP = 500;

export function LivePage({ project }: { project: Project }) {
  const route = useRoute();
  const event = route.params.get("event") ?? "";
  const distinctId = route.params.get("distinct_id") ?? "";
  const paused = route.params.get("paused") === "1";
  const [shown, setShown] = useState<StoredEvent[]>([]);
  const [waiting, setWaiting] = useState<StoredEvent[]>([]);
  const [status, setStatus] = useState("connecting");
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  useEffect(() => {
    const query = new URLSearchParams();
    if (event) query.set("event", event);
    if (distinctId) query.set("distinct_id", distinctId);
    const source = new EventSource(`/api/v1/projects/${project.id}/events/live?${query}`);
    source.onopen = () => setStatus("live");
    source.onerror = () => setStatus("reconnecting");
    source.addEventListener("event", (m) => {
      const e = JSON.parse((m as MessageEvent).data) as StoredEvent;
      if (pausedRef.current) setWaiting((w) => [e, ...w].slice(0, KEEP));
      else setShown((s) => [e, ...s].slice(0, KEEP));
    });
    source.addEventListener("closed", (m) => setStatus(`closed: ${JSON.parse((m as MessageEvent).data).reason}`));
    source.addEventListener("dropped", () => setStatus("fell behind; reconnecting"));
    return () => source.close();
  }, [project.id, event, distinctId]);

  useEffect(() => {
    if (!paused && waiting.length) {
      setShown((s) => [...waiting, ...s].slice(0, KEEP));
      setWaiting([]);
    }
  }, [paused]);

  return (
    <section aria-labelledby="live-title">
      <h1 id="live-title">Live events</h1>
      <div class="controls">
        <Field label="Event name">
          <input value={event} onChange={(e) => setParams({ event: e.currentTarget.value })} />
        </Field>
        <Field label="Distinct id">
          <input value={distinctId} onChange={(e) => setParams({ distinct_id: e.currentTarget.value })} />
        </Field>
        <button type="button" aria-pressed={paused} onClick={() => setParams({ paused: paused ? undefined : "1" })}>
          {paused ? "Resume" : "Pause"}
        </button>
        <span class="muted" id="live-status" role="status">
          {status}{paused ? ` · paused, ${waiting.length} waiting` : ""}
        </span>
      </div>
      <EventTable project={project} events={shown} id="live-events" time="time" />
      {shown.length === 0 ? <p class="muted">Waiting for events…</p> : null}
    </section>
  );
}
