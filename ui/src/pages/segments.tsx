// Segments: the list, and a new segment built from conditions (person properties and
// events performed, all or any of them), its size counted as you edit (the preview
// route; nothing is saved until asked); a segment's members.

import { useEffect, useState } from "preact/hooks";
import { Project, get, post } from "../api";
import { linkProps, navigate } from "../route";
import { ErrorBox, Field, Loading, fmt, useLoad } from "../ui";

interface SegmentView {
  id: string;
  name: string;
  kind: string;
  member_count: number;
  computed_at?: string;
}

type Row =
  | { type: "property"; key: string; operator: string; value: string }
  | { type: "performed"; event: string; days: number; min_count: number };

const OPERATORS = ["exact", "is_not", "contains", "not_contains", "gt", "gte", "lt", "lte", "is_set", "is_not_set"];

function value(text: string): unknown {
  const n = Number(text);
  if (text.trim() !== "" && !Number.isNaN(n)) return n;
  if (text === "true" || text === "false") return text === "true";
  return text;
}

function condition(rows: Row[], join: string): unknown | undefined {
  const parts = rows
    .filter((r) => (r.type === "property" ? r.key : r.event))
    .map((r) =>
      r.type === "property"
        ? { type: "property", key: r.key, operator: r.operator, ...(r.operator.startsWith("is_") && r.operator !== "is_not" ? {} : { value: value(r.value) }) }
        : { type: "performed", event: r.event, days: r.days, min_count: r.min_count },
    );
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : { type: join, conditions: parts };
}

function NewSegment({ project, onSaved }: { project: Project; onSaved: () => void }) {
  const [name, setName] = useState("");
  const [join, setJoin] = useState("and");
  const [rows, setRows] = useState<Row[]>([{ type: "property", key: "", operator: "exact", value: "" }]);
  const [size, setSize] = useState<number>();
  const [error, setError] = useState<unknown>();
  const built = condition(rows, join);
  const key = JSON.stringify(built);
  useEffect(() => {
    if (!built) {
      setSize(undefined);
      return;
    }
    let live = true;
    const timer = setTimeout(() => {
      post<{ persons: number }>(`/api/v1/projects/${project.id}/segments/preview`, { condition: built }).then(
        (p) => live && (setSize(p.persons), setError(undefined)),
        (e) => live && setError(e),
      );
    }, 250);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [key]);
  const setRow = (i: number, r: Partial<Row>) => setRows(rows.map((o, j) => (j === i ? ({ ...o, ...r } as Row) : o)));
  return (
    <form aria-label="New segment" onSubmit={async (e) => {
      e.preventDefault();
      try {
        await post(`/api/v1/projects/${project.id}/segments`, { name, condition: built });
        setName("");
        onSaved();
      } catch (err) {
        setError(err);
      }
    }}>
      <h2>New segment</h2>
      <div class="controls">
        <Field label="Segment name"><input required value={name} onInput={(e) => setName(e.currentTarget.value)} /></Field>
        <Field label="Persons matching">
          <select value={join} onChange={(e) => setJoin(e.currentTarget.value)}>
            <option value="and">all conditions</option>
            <option value="or">any condition</option>
          </select>
        </Field>
      </div>
      {rows.map((r, i) => (
        <div class="controls">
          {r.type === "property" ? (
            <>
              <Field label={`Condition ${i + 1} property`}><input value={r.key} onInput={(e) => setRow(i, { key: e.currentTarget.value })} /></Field>
              <Field label={`Condition ${i + 1} operator`}>
                <select value={r.operator} onChange={(e) => setRow(i, { operator: e.currentTarget.value })}>
                  {OPERATORS.map((o) => <option value={o}>{o}</option>)}
                </select>
              </Field>
              <Field label={`Condition ${i + 1} value`}><input value={r.value} onInput={(e) => setRow(i, { value: e.currentTarget.value })} /></Field>
            </>
          ) : (
            <>
              <Field label={`Condition ${i + 1} event`}><input value={r.event} onInput={(e) => setRow(i, { event: e.currentTarget.value })} /></Field>
              <Field label="at least (times)"><input type="number" min={1} value={r.min_count} onInput={(e) => setRow(i, { min_count: Number(e.currentTarget.value) })} /></Field>
              <Field label="in the last (days)"><input type="number" min={1} value={r.days} onInput={(e) => setRow(i, { days: Number(e.currentTarget.value) })} /></Field>
            </>
          )}
          <button type="button" class="link" onClick={() => setRows(rows.filter((_, j) => j !== i))}>Remove</button>
        </div>
      ))}
      <div class="controls">
        <button type="button" onClick={() => setRows([...rows, { type: "property", key: "", operator: "exact", value: "" }])}>Add a property condition</button>
        <button type="button" onClick={() => setRows([...rows, { type: "performed", event: "", days: 30, min_count: 1 }])}>Add an event condition</button>
        <button type="submit" disabled={!built}>Save segment</button>
      </div>
      <p role="status">Persons now: <strong id="segment-size">{size === undefined ? "–" : fmt(size)}</strong></p>
      <ErrorBox error={error} />
    </form>
  );
}

function Members({ project, id }: { project: Project; id: string }) {
  const segment = useLoad(`segment:${id}`, () => get<SegmentView>(`/api/v1/projects/${project.id}/segments/${id}`));
  const persons = useLoad(`segment-persons:${id}`, () =>
    get<{ persons: string[] }>(`/api/v1/projects/${project.id}/segments/${id}/persons?limit=100`),
  );
  return (
    <section aria-labelledby="segment-title">
      <p><a {...linkProps(`/projects/${project.id}/segments`)}>All segments</a></p>
      <ErrorBox error={segment.error ?? persons.error} />
      <h1 id="segment-title">{segment.data?.name ?? "Segment"}</h1>
      {segment.data ? <p class="muted">{segment.data.kind} · {fmt(segment.data.member_count)} persons</p> : <Loading />}
      <ul id="segment-members">
        {persons.data?.persons.map((p) => (
          <li><a {...linkProps(`/projects/${project.id}/persons/${p}`)}>{p}</a></li>
        ))}
      </ul>
    </section>
  );
}

export function SegmentsPage({ project, id, role }: { project: Project; id?: string; role: string }) {
  const list = useLoad(`segments:${project.id}:${id ?? ""}`, () =>
    get<{ segments: SegmentView[] }>(`/api/v1/projects/${project.id}/segments`),
  );
  if (id) return <Members project={project} id={id} />;
  const canWrite = role !== "viewer";
  return (
    <section aria-labelledby="segments-title">
      <h1 id="segments-title">Segments</h1>
      <ErrorBox error={list.error} />
      <table class="numbers" id="segments-table">
        <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Persons</th></tr></thead>
        <tbody>
          {list.data?.segments.map((s) => (
            <tr>
              <th scope="row"><a {...linkProps(`/projects/${project.id}/segments/${s.id}`)}>{s.name}</a></th>
              <td>{s.kind}</td><td>{fmt(s.member_count)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {canWrite ? <NewSegment project={project} onSaved={() => { list.reload(); navigate(location.pathname, true); }} /> : null}
    </section>
  );
}
