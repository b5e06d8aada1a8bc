// Events: the explorer (stored events newest first, filtered by name, distinct id,
// one property and a date to start from, page by page), the table of events it shares
// with the live view (a row opens the event's properties and its person), and the
// project's event names offered wherever an event is named.

import { useEffect, useState } from "preact/hooks";
import { Project, StoredEvent, get } from "../api";
import { linkProps, setParams, useRoute } from "../route";
import { ErrorBox, Field, Loading } from "../ui";

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

/** Events as rows; Enter, Space or a click on a row opens its properties and person. */
export function EventTable(props: { project: Project; events: StoredEvent[]; id: string; time: "time" | "date" }) {
  const [open, setOpen] = useState<string>();
  const when = (t: string) => (props.time === "time" ? new Date(t).toLocaleTimeString() : new Date(t).toLocaleString());
  return (
    <table class="events" id={props.id}>
      <thead>
        <tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Distinct id</th></tr>
      </thead>
      <tbody>
        {props.events.map((e) => {
          const id = String(e.message_id ?? `${e.timestamp}${e.distinct_id}`);
          const toggle = () => setOpen(open === id ? undefined : id);
          return (
            <>
              <tr class="event-row" data-event={e.event} tabIndex={0} aria-expanded={open === id} onClick={toggle}
                onKeyDown={(k) => {
                  if (k.key === "Enter" || k.key === " ") {
                    k.preventDefault();
                    toggle();
                  }
                }}>
                <td>{when(e.timestamp)}</td>
                <td>{e.event}</td>
                <td>{e.distinct_id}</td>
              </tr>
              {open === id ? (
                <tr class="event-detail">
                  <td colSpan={3}>
                    {e.person_id ? <a {...linkProps(`/projects/${props.project.id}/persons/${e.person_id}`)}>Open the person</a> : null}
                    <pre>{JSON.stringify(e.properties, null, 2)}</pre>
                  </td>
                </tr>
              ) : null}
            </>
          );
        })}
      </tbody>
    </table>
  );
}

interface EventPage {
  events: StoredEvent[];
  next_cursor?: string;
}

export function EventsPage({ project }: { project: Project }) {
  const route = useRoute();
  const p = route.params;
  const filters = {
    event: p.get("event") ?? "",
    distinct_id: p.get("distinct_id") ?? "",
    before: p.get("before") ?? "",
    property: p.get("property") ?? "",
    value: p.get("value") ?? "",
  };
  const names = useEventNames(project.id);
  const [pages, setPages] = useState<EventPage[]>([]);
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(false);
  const query = (cursor?: string) => {
    const q = new URLSearchParams({ limit: "100" });
    if (filters.event) q.set("event", filters.event);
    if (filters.distinct_id) q.set("distinct_id", filters.distinct_id);
    if (filters.before) q.set("before", new Date(`${filters.before}T23:59:59.999`).toISOString());
    if (filters.property) q.set(`property.${filters.property}`, filters.value);
    if (cursor) q.set("cursor", cursor);
    return `/api/v1/projects/${project.id}/events?${q}`;
  };
  const load = (cursor?: string) => {
    setLoading(true);
    setError(undefined);
    get<EventPage>(query(cursor)).then(
      (page) => {
        setPages((old) => (cursor ? [...old, page] : [page]));
        setLoading(false);
      },
      (e) => {
        setError(e);
        setLoading(false);
      },
    );
  };
  const key = `${project.id}:${JSON.stringify(filters)}`;
  useEffect(() => load(), [key]);
  const events = pages.flatMap((page) => page.events);
  const next = pages[pages.length - 1]?.next_cursor;
  return (
    <section aria-labelledby="events-title">
      <h1 id="events-title">Events</h1>
      <EventNames id="event-names" names={names} />
      <div class="controls">
        <Field label="Event">
          <input list="event-names" value={filters.event} placeholder="All events"
            onChange={(e) => setParams({ event: e.currentTarget.value })} />
        </Field>
        <Field label="Distinct id">
          <input value={filters.distinct_id} onChange={(e) => setParams({ distinct_id: e.currentTarget.value })} />
        </Field>
        <Field label="Property">
          <input value={filters.property} placeholder="name" onChange={(e) => setParams({ property: e.currentTarget.value })} />
        </Field>
        <Field label="equals">
          <input value={filters.value} onChange={(e) => setParams({ value: e.currentTarget.value })} />
        </Field>
        <Field label="On or before">
          <input type="date" value={filters.before} onChange={(e) => setParams({ before: e.currentTarget.value })} />
        </Field>
      </div>
      <ErrorBox error={error} />
      <EventTable project={project} events={events} id="events-table" time="date" />
      {loading ? <Loading /> : null}
      {!loading && events.length === 0 && !error ? <p class="muted">No events match.</p> : null}
      {next && !loading ? <button type="button" onClick={() => load(next)}>Older events</button> : null}
    </section>
  );
}
