// Event names the project has seen recently (the real-time counters), offered as
// suggestions wherever an event is named.

import { useEffect, useState } from "preact/hooks";
import { get } from "../api";

export function useEventNames(project: string): string[] {
  const [names, setNames] = useState<string[]>([]);
  useEffect(() => {
    get<{ events: Record<string, { total: number }> }>(`/api/v1/projects/${project}/events/counts?last=24h`).then(
      (c) => setNames(Object.entries(c.events).sort((a, b) => b[1].total - a[1].total).map(([n]) => n)),
      () => setNames([]),
    );
  }, [project]);
  return names;
}

export function EventNames({ id, names }: { id: string; names: string[] }) {
  return <datalist id={id}>{names.map((n) => <option value={n} />)}</datalist>;
}
