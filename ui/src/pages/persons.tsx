// Persons: the list with a search over distinct ids, and a person's page with their
// properties, ids, merge log, devices and event timeline (newest first, with a jump to
// any date: no hidden default window).

import { useState } from "preact/hooks";
import { Project, StoredEvent, get } from "../api";
import { linkProps, setParams, useRoute } from "../route";
import { ErrorBox, Field, Loading, fmt, useLoad } from "../ui";

interface PersonView {
  id: string;
  distinct_ids: string[];
  is_identified: boolean;
  properties: Record<string, unknown>;
  first_seen?: string;
  last_seen?: string;
  event_count: number;
}

function PersonList({ project }: { project: Project }) {
  const route = useRoute();
  const search = route.params.get("search") ?? "";
  const [text, setText] = useState(search);
  const list = useLoad(`${project.id}:${search}`, () =>
    get<{ persons: PersonView[] }>(
      `/api/v1/projects/${project.id}/persons?limit=100${search ? `&search=${encodeURIComponent(search)}` : ""}`,
    ),
  );
  return (
    <section aria-labelledby="persons-title">
      <h1 id="persons-title">Persons</h1>
      <form class="controls" onSubmit={(e) => { e.preventDefault(); setParams({ search: text }); }}>
        <Field label="Search distinct ids">
          <input type="search" value={text} onInput={(e) => setText(e.currentTarget.value)} />
        </Field>
        <button type="submit">Search</button>
      </form>
      <ErrorBox error={list.error} />
      {list.loading && !list.data ? <Loading /> : null}
      <table class="numbers" id="persons-table">
        <thead><tr><th scope="col">Person</th><th scope="col">Events</th><th scope="col">Last seen</th></tr></thead>
        <tbody>
          {list.data?.persons.map((p) => (
            <tr>
              <th scope="row"><a {...linkProps(`/projects/${project.id}/persons/${p.id}`)}>{p.distinct_ids[0] ?? p.id}</a></th>
              <td>{fmt(p.event_count)}</td>
              <td>{p.last_seen ? new Date(p.last_seen).toLocaleString() : "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Person({ project, id }: { project: Project; id: string }) {
  const route = useRoute();
  const before = route.params.get("before") ?? "";
  const person = useLoad(`${id}`, () => get<PersonView>(`/api/v1/projects/${project.id}/persons/${id}`));
  const merges = useLoad(`${id}:merges`, () => get<{ merges: unknown[] }>(`/api/v1/projects/${project.id}/persons/${id}/merges`));
  const devices = useLoad(`${id}:devices`, () =>
    get<{ devices: { id: string; platform: string; state: string }[] }>(`/api/v1/projects/${project.id}/persons/${id}/devices`),
  );
  const ids = person.data?.distinct_ids ?? [];
  const timeline = useLoad(`${id}:${ids.join(",")}:${before}`, async () => {
    const pages = await Promise.all(
      ids.slice(0, 20).map((d) =>
        get<{ events: StoredEvent[] }>(
          `/api/v1/projects/${project.id}/events?limit=100&distinct_id=${encodeURIComponent(d)}${before ? `&before=${encodeURIComponent(new Date(before).toISOString())}` : ""}`,
        ),
      ),
    );
    return pages.flatMap((p) => p.events).sort((a, b) => b.timestamp.localeCompare(a.timestamp)).slice(0, 100);
  });
  if (person.error) return <ErrorBox error={person.error} />;
  if (!person.data) return <Loading />;
  const p = person.data;
  return (
    <section aria-labelledby="person-title">
      <p><a {...linkProps(`/projects/${project.id}/persons`)}>All persons</a></p>
      <h1 id="person-title">{p.distinct_ids[0] ?? p.id}</h1>
      <p class="muted">{p.is_identified ? "Identified" : "Anonymous"} · {fmt(p.event_count)} events · first seen {p.first_seen ? new Date(p.first_seen).toLocaleString() : "–"}</p>
      <h2>Properties</h2>
      <table class="props" id="person-properties">
        <tbody>
          {Object.entries(p.properties).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => (
            <tr><th scope="row">{k}</th><td>{typeof v === "string" ? v : JSON.stringify(v)}</td></tr>
          ))}
        </tbody>
      </table>
      <h2>Distinct ids</h2>
      <ul>{p.distinct_ids.map((d) => <li>{d}</li>)}</ul>
      <h2>Merges</h2>
      <ErrorBox error={merges.error} />
      {merges.data && merges.data.merges.length === 0 ? <p class="muted">None.</p> : <pre>{JSON.stringify(merges.data?.merges ?? [], null, 2)}</pre>}
      <h2>Devices</h2>
      <ErrorBox error={devices.error} />
      <ul>{devices.data?.devices.map((d) => <li>{d.platform} · {d.state} · {d.id}</li>)}</ul>
      <h2>Events</h2>
      <div class="controls">
        <Field label="Events before">
          <input type="datetime-local" value={before} onChange={(e) => setParams({ before: e.currentTarget.value })} />
        </Field>
      </div>
      <ErrorBox error={timeline.error} />
      <table class="events" id="person-events">
        <thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Distinct id</th></tr></thead>
        <tbody>
          {timeline.data?.map((e) => (
            <tr><td>{new Date(e.timestamp).toLocaleString()}</td><td>{e.event}</td><td>{e.distinct_id}</td></tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function PersonsPage({ project, personId }: { project: Project; personId?: string }) {
  return personId ? <Person project={project} id={personId} /> : <PersonList project={project} />;
}
