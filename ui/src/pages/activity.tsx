// Stickiness (how many intervals of the range each person was active in) and
// lifecycle (new, returning, resurrecting and dormant persons per bucket). The query is
// the URL's `q`, as on the other insight screens.

import { useMemo } from "preact/hooks";
import { Project, post } from "../api";
import { TimeChart, colour } from "../chart";
import { useQuery } from "../route";
import { ErrorBox, Field, Loading, fmt, useLoad } from "../ui";
import { EventNames, useEventNames } from "./events";

const RANGES: [string, string][] = [
  ["-7d", "Last 7 days"],
  ["-14d", "Last 14 days"],
  ["-30d", "Last 30 days"],
  ["-90d", "Last 90 days"],
];

function RangeAndInterval(props: {
  interval: string;
  from?: string;
  onChange: (next: { interval?: string; date_range?: { from: string } }) => void;
}) {
  return (
    <>
      <Field label="Interval">
        <select value={props.interval} onChange={(e) => props.onChange({ interval: e.currentTarget.value })}>
          {["hour", "day", "week", "month"].map((v) => <option value={v}>{v}</option>)}
        </select>
      </Field>
      <Field label="Date range">
        <select value={props.from ?? ""} onChange={(e) => props.onChange({ date_range: { from: e.currentTarget.value } })}>
          {RANGES.map(([v, l]) => <option value={v}>{l}</option>)}
        </select>
      </Field>
    </>
  );
}

interface StickinessSpec {
  series: { event?: string; math: string }[];
  interval: string;
  date_range: { from?: string };
}

export interface StickinessResult {
  interval: string;
  intervals: number;
  results: { series: string; label: string; persons: number[] }[];
}

export function StickinessView({ result }: { result: StickinessResult }) {
  const most = Math.max(1, ...result.results.flatMap((s) => s.persons));
  return (
    <div class="table-wrap">
      <table class="numbers" id="stickiness-table">
        <thead>
          <tr>
            <th scope="col">Active in</th>
            {result.results.map((s) => <th scope="col">{s.label}</th>)}
          </tr>
        </thead>
        <tbody>
          {Array.from({ length: result.intervals }, (_, k) => (
            <tr>
              <th scope="row">{k + 1} {result.interval}{k ? "s" : ""}</th>
              {result.results.map((s, i) => (
                <td class="bar-cell">
                  <span class="bar" style={{ width: `${(100 * (s.persons[k] ?? 0)) / most}%`, background: colour(i) }} />
                  <span class="bar-value">{fmt(s.persons[k] ?? 0)}</span>
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function StickinessPage({ project }: { project: Project }) {
  const [spec, update] = useQuery<StickinessSpec>({ series: [{ math: "total" }], interval: "day", date_range: { from: "-30d" } });
  const names = useEventNames(project.id);
  const result = useLoad(`${project.id}:${JSON.stringify(spec)}`, () =>
    post<StickinessResult>(`/api/v1/projects/${project.id}/query/stickiness`, spec),
  );
  return (
    <section aria-labelledby="stickiness-title">
      <h1 id="stickiness-title">Stickiness</h1>
      <p class="muted">How many {spec.interval}s of the range each person did the event in.</p>
      <EventNames id="event-names" names={names} />
      <div class="controls">
        <Field label="Event">
          <input list="event-names" value={spec.series[0]?.event ?? ""} placeholder="All events"
            onChange={(e) => update({ series: [{ math: "total", event: e.currentTarget.value || undefined }] })} />
        </Field>
        <RangeAndInterval interval={spec.interval} from={spec.date_range.from} onChange={update} />
      </div>
      <ErrorBox error={result.error} />
      {result.loading && !result.data ? <Loading /> : null}
      {result.data ? <StickinessView result={result.data} /> : null}
    </section>
  );
}

interface LifecycleSpec {
  event?: string;
  interval: string;
  date_range: { from?: string };
}

export interface LifecycleResult {
  interval: string;
  buckets: string[];
  new: number[];
  returning: number[];
  resurrecting: number[];
  dormant: number[];
}

const STATUSES = ["new", "returning", "resurrecting", "dormant"] as const;

export function LifecycleView({ result }: { result: LifecycleResult }) {
  const lines = useMemo(() => STATUSES.map((k) => ({ label: k, values: result[k] })), [result]);
  const day = (b: string) => b.slice(0, result.interval === "hour" ? 16 : 10);
  return (
    <>
      <TimeChart buckets={result.buckets} lines={lines} />
      <div class="table-wrap">
        <table class="numbers" id="lifecycle-table">
          <thead>
            <tr>
              <th scope="col">Persons</th>
              {result.buckets.map((b) => <th scope="col">{day(b)}</th>)}
            </tr>
          </thead>
          <tbody>
            {STATUSES.map((k) => (
              <tr data-status={k}>
                <th scope="row">{k}</th>
                {result[k].map((v) => <td>{fmt(v)}</td>)}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

export function LifecyclePage({ project }: { project: Project }) {
  const [spec, update] = useQuery<LifecycleSpec>({ interval: "day", date_range: { from: "-14d" } });
  const names = useEventNames(project.id);
  const result = useLoad(`${project.id}:${JSON.stringify(spec)}`, () =>
    post<LifecycleResult>(`/api/v1/projects/${project.id}/query/lifecycle`, spec),
  );
  return (
    <section aria-labelledby="lifecycle-title">
      <h1 id="lifecycle-title">Lifecycle</h1>
      <p class="muted">
        Per {spec.interval}: persons new (first event ever), returning (active the {spec.interval} before), resurrecting
        (back after a pause) and dormant (active the {spec.interval} before, not now; counted negative).
      </p>
      <EventNames id="event-names" names={names} />
      <div class="controls">
        <Field label="Event">
          <input list="event-names" value={spec.event ?? ""} placeholder="Any event"
            onChange={(e) => update({ event: e.currentTarget.value || undefined })} />
        </Field>
        <RangeAndInterval interval={spec.interval} from={spec.date_range.from} onChange={update} />
      </div>
      <ErrorBox error={result.error} />
      {result.loading && !result.data ? <Loading /> : null}
      {result.data ? <LifecycleView result={result.data} /> : null}
    </section>
  );
}
