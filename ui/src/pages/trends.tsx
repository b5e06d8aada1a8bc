// Trends: series (event and math), interval, date range, breakdown, compare, chart
// type; the numbers as a table under the chart. The query is the URL's `q`.

import { useMemo } from "preact/hooks";
import { Project, TrendsResult, post } from "../api";
import { TimeChart } from "../chart";
import { setParams, useQuery, useRoute } from "../route";
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
  properties?: unknown[];
}

const DEFAULT: TrendsSpec = { series: [{ math: "total" }], interval: "day", date_range: { from: "-30d" } };

const MATHS: [string, string][] = [
  ["total", "Total count"],
  ["unique_persons", "Unique persons"],
  ["avg_per_person", "Average per person"],
];

/** The rows of a trends table: one per series (and breakdown value). */
export function TrendsTable({ result, id }: { result: TrendsResult; id?: string }) {
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
          {result.results.map((s) => (
            <tr data-series={s.series} data-breakdown={s.breakdown_value ?? ""}>
              <th scope="row">{s.label}{s.breakdown_value !== undefined ? ` · ${s.breakdown_value}` : ""}</th>
              <td>{fmt(s.aggregated)}</td>
              {s.data.map((v) => <td>{fmt(v)}</td>)}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function TrendsView({ result, chart }: { result: TrendsResult; chart: string }) {
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
  if (chart === "table") return <TrendsTable result={result} />;
  return <TimeChart buckets={result.buckets} lines={lines} bars={chart === "bar"} />;
}

export function TrendsPage({ project }: { project: Project; role: string }) {
  const route = useRoute();
  const [spec, update] = useQuery(DEFAULT);
  const chart = route.params.get("chart") ?? "line";
  const key = JSON.stringify(spec);
  const names = useEventNames(project.id);
  const result = useLoad(`${project.id}:${key}`, () =>
    post<TrendsResult>(`/api/v1/projects/${project.id}/query/trends`, spec),
  );
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
              <button type="button" class="link" onClick={() => update({ series: spec.series.filter((_, j) => j !== i) })}>
                Remove series {String.fromCharCode(65 + i)}
              </button>
            ) : null}
          </fieldset>
        ))}
        {spec.series.length < 20 ? (
          <button type="button" onClick={() => update({ series: [...spec.series, { math: "total" }] })}>Add series</button>
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
          <TrendsView result={result.data} chart={chart} />
          <h2>Numbers</h2>
          <TrendsTable result={result.data} id="trends-table" />
        </>
      ) : null}
    </section>
  );
}
