// Trends: series (event and math), interval, date range, breakdown, compare, chart
// type; the numbers as a table under the chart. The query is the URL's `q`.

import { useCallback, useMemo } from "preact/hooks";
import { Project, TrendsResult, post } from "../api";
import { TimeChart } from "../chart";
import { linkProps, setParams, useQuery, useRoute } from "../route";
import { ErrorBox, Field, Loading, fmt, useLoad } from "../ui";
import { EventNames, useEventNames } from "./events";

interface SeriesSpec {
  event?: string;
  math: string;
}

export interface TrendsSpec {
  series: SeriesSpec[];
  interval: string;
  date_range: { from?: string; to?: string };
  breakdown?: { key: string; type: string; limit?: number };
  compare?: boolean;
  formula?: string;
  properties?: unknown[];
}

/** Picks the value of row `row` (of `results`) in bucket `bucket`. */
type Pick = (row: number, bucket: number) => void;

const DEFAULT: TrendsSpec = { series: [{ math: "total" }], interval: "day", date_range: { from: "-30d" } };

const MATHS: [string, string][] = [
  ["total", "Total count"],
  ["unique_persons", "Unique persons"],
  ["avg_per_person", "Average per person"],
];

/** The rows of a trends table: one per series (and breakdown value). */
export function TrendsTable({ result, id, onPick }: { result: TrendsResult; id?: string; onPick?: Pick }) {
  const day = (b: string) => b.slice(0, result.interval === "hour" || result.interval === "minute" ? 16 : 10);
  return (
    <div class="table-wrap">
      <table id={id} class="numbers">
        <thead>
          <tr>
            <th scope="col">Series</th>
            <th scope="col">Total</th>
            {result.buckets.map((b) => <th scope="col">{day(b)}</th>)}
          </tr>
        </thead>
        <tbody>
          {result.results.map((s, row) => (
            <tr data-series={s.series} data-breakdown={s.breakdown_value ?? ""}>
              <th scope="row">{s.label}{s.breakdown_value !== undefined ? ` · ${s.breakdown_value}` : ""}</th>
              <td>{fmt(s.aggregated)}</td>
              {s.data.map((v, b) =>
                onPick && s.series !== "formula" && v ? (
                  <td>
                    <button type="button" class="link cell" aria-label={`Persons of ${s.label} on ${day(result.buckets[b])}`}
                      onClick={() => onPick(row, b)}>{fmt(v)}</button>
                  </td>
                ) : (
                  <td>{fmt(v)}</td>
                ),
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function TrendsView({ result, chart, onPick }: { result: TrendsResult; chart: string; onPick?: Pick }) {
  const lines = useMemo(
    () => [
      ...result.results.map((s) => ({
        label: s.label + (s.breakdown_value !== undefined ? ` · ${s.breakdown_value}` : ""),
        values: s.data,
      })),
      ...(result.previous ?? []).map((s) => ({ label: `${s.label} (previous)`, values: s.data })),
    ],
    [result],
  );
  if (chart === "number") {
    return (
      <div class="big-numbers">
        {result.results.map((s) => (
          <div class="big-number"><span class="value">{fmt(s.aggregated)}</span><span class="label">{s.label}</span></div>
        ))}
      </div>
    );
  }
  if (chart === "table") return <TrendsTable result={result} onPick={onPick} />;
  // Lines after the answer's rows are the previous period's: they list no persons.
  const pickLine = useCallback(
    (line: number, bucket: number) => {
      if (onPick && line < result.results.length && result.results[line].series !== "formula") onPick(line, bucket);
    },
    [result, onPick],
  );
  return <TimeChart buckets={result.buckets} lines={lines} bars={chart === "bar"} onPick={onPick ? pickLine : undefined} />;
}

interface PointPersons {
  total: number;
  persons: { person_id: string; distinct_id?: string; events: number }[];
}

/** The persons behind one value: the series, bucket and breakdown value of `row`. */
function PointPersonsList({ project, spec, result, row, bucket }: {
  project: Project;
  spec: TrendsSpec;
  result: TrendsResult;
  row: number;
  bucket: number;
}) {
  const s = result.results[row];
  const label = result.buckets[bucket];
  const body = {
    query: spec,
    series: s ? s.series.charCodeAt(0) - 65 : 0,
    bucket: label,
    breakdown_value: s?.breakdown_value,
  };
  const persons = useLoad(`${project.id}:${JSON.stringify(body)}`, () =>
    post<PointPersons>(`/api/v1/projects/${project.id}/query/trends/persons`, body),
  );
  if (!s || !label) return null;
  return (
    <section class="point-persons" aria-labelledby="point-title">
      <h2 id="point-title">
        Persons of {s.label}{s.breakdown_value !== undefined ? ` · ${s.breakdown_value}` : ""} on {label.slice(0, 16)}
      </h2>
      <button type="button" class="link" onClick={() => setParams({ point: undefined })}>Close</button>
      <ErrorBox error={persons.error} />
      {persons.loading && !persons.data ? <Loading /> : null}
      {persons.data ? (
        <>
          <p class="muted">{fmt(persons.data.total)} persons{persons.data.total > persons.data.persons.length ? `, the first ${persons.data.persons.length} shown` : ""}</p>
          <table id="point-persons">
            <thead><tr><th scope="col">Person</th><th scope="col">Events</th></tr></thead>
            <tbody>
              {persons.data.persons.map((p) => (
                <tr>
                  <td><a {...linkProps(`/projects/${project.id}/persons/${p.person_id}`)}>{p.distinct_id ?? p.person_id}</a></td>
                  <td>{fmt(p.events)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
    </section>
  );
}

export function TrendsPage({ project }: { project: Project; role: string }) {
  const route = useRoute();
  const [spec, setSpec] = useQuery(DEFAULT);
  // A changed query drops the picked point.
  const update = (next: Partial<TrendsSpec>) => {
    setParams({ point: undefined });
    setSpec(next);
  };
  const chart = route.params.get("chart") ?? "line";
  const key = JSON.stringify(spec);
  const names = useEventNames(project.id);
  const result = useLoad(`${project.id}:${key}`, () =>
    post<TrendsResult>(`/api/v1/projects/${project.id}/query/trends`, spec),
  );
  const point = (route.params.get("point") ?? "").split(".").map(Number);
  const onPick = useCallback((row: number, bucket: number) => setParams({ point: `${row}.${bucket}` }), []);
  const setSeries = (i: number, s: Partial<SeriesSpec>) =>
    update({ series: spec.series.map((old, j) => (j === i ? { ...old, ...s } : old)) });
  return (
    <section aria-labelledby="trends-title">
      <h1 id="trends-title">Trends</h1>
      <EventNames id="event-names" names={names} />
      <div class="controls">
        {spec.series.map((s, i) => (
          <fieldset class="series">
            <legend>Series {String.fromCharCode(65 + i)}</legend>
            <Field label="Event">
              <input list="event-names" value={s.event ?? ""} placeholder="All events"
                onChange={(e) => setSeries(i, { event: e.currentTarget.value || undefined })} />
            </Field>
            <Field label="Measure">
              <select value={s.math} onChange={(e) => setSeries(i, { math: e.currentTarget.value })}>
                {MATHS.map(([v, l]) => <option value={v}>{l}</option>)}
              </select>
            </Field>
            {spec.series.length > 1 ? (
              <button type="button" class="link" onClick={() => update({ series: spec.series.filter((_, j) => j !== i), formula: undefined })}>
                Remove series {String.fromCharCode(65 + i)}
              </button>
            ) : null}
          </fieldset>
        ))}
        {spec.series.length < 20 ? (
          <button type="button" onClick={() => update({ series: [...spec.series, { math: "total" }] })}>Add series</button>
        ) : null}
        {spec.series.length > 1 ? (
          <Field label="Formula (A, B, … and + - * / ( ))">
            <input value={spec.formula ?? ""} placeholder="e.g. B / A * 100"
              onChange={(e) => update({ formula: e.currentTarget.value.trim() || undefined })} />
          </Field>
        ) : null}
        <Field label="Interval">
          <select value={spec.interval} onChange={(e) => update({ interval: e.currentTarget.value })}>
            {["hour", "day", "week", "month"].map((v) => <option value={v}>{v}</option>)}
          </select>
        </Field>
        <Field label="Date range">
          <select value={spec.date_range.from ?? ""} onChange={(e) => update({ date_range: { from: e.currentTarget.value } })}>
            {[["-24h", "Last 24 hours"], ["-7d", "Last 7 days"], ["-30d", "Last 30 days"], ["-90d", "Last 90 days"], ["-365d", "Last year"]].map(
              ([v, l]) => <option value={v}>{l}</option>,
            )}
          </select>
        </Field>
        <Field label="Breakdown by property">
          <input value={spec.breakdown?.key ?? ""} placeholder="none"
            onChange={(e) => {
              const key = e.currentTarget.value.trim();
              update({ breakdown: key ? { key, type: spec.breakdown?.type ?? "event", limit: spec.breakdown?.limit ?? 10 } : undefined });
            }} />
        </Field>
        {spec.breakdown ? (
          <>
            <Field label="Property of">
              <select value={spec.breakdown.type} onChange={(e) => update({ breakdown: { ...spec.breakdown!, type: e.currentTarget.value } })}>
                <option value="event">the event</option>
                <option value="person">the person</option>
              </select>
            </Field>
            <Field label="Top values">
              <input type="number" min={1} max={100} value={spec.breakdown.limit ?? 10}
                onChange={(e) => update({ breakdown: { ...spec.breakdown!, limit: Number(e.currentTarget.value) } })} />
            </Field>
          </>
        ) : null}
        <label class="check">
          <input type="checkbox" checked={!!spec.compare} onChange={(e) => update({ compare: e.currentTarget.checked })} />
          Compare to the previous period
        </label>
        <Field label="Chart">
          <select value={chart} onChange={(e) => setParams({ chart: e.currentTarget.value })}>
            {["line", "bar", "number", "table"].map((v) => <option value={v}>{v}</option>)}
          </select>
        </Field>
      </div>
      <ErrorBox error={result.error} />
      {result.loading && !result.data ? <Loading /> : null}
      {result.data ? (
        <>
          <TrendsView result={result.data} chart={chart} onPick={onPick} />
          <h2>Numbers</h2>
          <TrendsTable result={result.data} id="trends-table" onPick={onPick} />
          {point.length === 2 && point.every(Number.isInteger) ? (
            <PointPersonsList project={project} spec={spec} result={result.data} row={point[0]} bucket={point[1]} />
          ) : null}
        </>
      ) : null}
    </section>
  );
}
