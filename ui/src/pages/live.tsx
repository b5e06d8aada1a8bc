// Live events over the server's event stream (Server-Sent Events, no polling): newest
// first, with pause (events keep arriving and wait), a filter by event name and
// distinct id, and a row that opens the event's properties and its person.

import { useEffect, useRef, useState } from "preact/hooks";
import { Project, StoredEvent } from "../api";
import { linkProps, setParams, useRoute } from "../route";
import { Field } from "../ui";

const KEEP = 500;

export function LivePage({ project }: { project: Project }) {
  const route = useRoute();
  const event = route.params.get("event") ?? "";
  const distinctId = route.params.get("distinct_id") ?? "";
  const paused = route.params.get("paused") === "1";
  const [shown, setShown] = useState<StoredEvent[]>([]);
  const [waiting, setWaiting] = useState<StoredEvent[]>([]);
  const [status, setStatus] = useState("connecting");
  const [open, setOpen] = useState<string>();
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
      <table class="events" id="live-events">
        <thead>
          <tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Distinct id</th></tr>
        </thead>
        <tbody>
          {shown.map((e) => {
            const id = String(e.message_id ?? `${e.timestamp}${e.distinct_id}`);
            return (
              <>
                <tr class="event-row" data-event={e.event} tabIndex={0} aria-expanded={open === id}
                  onClick={() => setOpen(open === id ? undefined : id)}
                  onKeyDown={(k) => (k.key === "Enter" || k.key === " ") && setOpen(open === id ? undefined : id)}>
                  <td>{new Date(e.timestamp).toLocaleTimeString()}</td>
                  <td>{e.event}</td>
                  <td>{e.distinct_id}</td>
                </tr>
                {open === id ? (
                  <tr class="event-detail">
                    <td colSpan={3}>
                      {e.person_id ? <a {...linkProps(`/projects/${project.id}/persons/${e.person_id}`)}>Open the person</a> : null}
                      <pre>{JSON.stringify(e.properties, null, 2)}</pre>
                    </td>
                  </tr>
                ) : null}
              </>
            );
          })}
        </tbody>
      </table>
      {shown.length === 0 ? <p class="muted">Waiting for events…</p> : null}
    </section>
  );
}
