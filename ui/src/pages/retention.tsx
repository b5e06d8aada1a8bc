// Retention: cohorts by the period of their start event, as a heat table of the share
// of each cohort that came back in each later period. The query is the URL's `q`.

import { Project, post } from "../api";
import { useQuery } from "../route";
import { ErrorBox, Field, Loading, fmt, pct, useLoad } from "../ui";
import { EventNames, useEventNames } from "./events";

interface RetentionSpec {
  start_event: { event?: string };
  return_event: { event?: string };
  period: string;
  retention_type: string;
  date_range: { from?: string };
}

interface RetentionResult {
  period: string;
  cohorts: { period: string; size: number; values: number[] }[];
}

const DEFAULT: RetentionSpec = {
  start_event: {},
  return_event: {},
  period: "day",
  retention_type: "first_time",
  date_range: { from: "-14d" },
};

export function RetentionTable({ result }: { result: RetentionResult }) {
  const periods = Math.max(0, ...result.cohorts.map((c) => c.values.length));
  return (
    <div class="table-wrap">
      <table class="numbers heat" id="retention-table">
        <thead>
          <tr>
            <th scope="col">Cohort</th>
            <th scope="col">Persons</th>
            {Array.from({ length: periods }, (_, k) => <th scope="col">{result.period} {k}</th>)}
          </tr>
        </thead>
        <tbody>
          {result.cohorts.map((c) => (
            <tr>
              <th scope="row">{c.period.slice(0, 10)}</th>
              <td>{fmt(c.size)}</td>
              {c.values.map((v) => {
                const share = c.size ? v / c.size : 0;
                return (
                  <td style={{ background: `rgba(59, 111, 216, ${(0.1 + 0.8 * share).toFixed(2)})`, color: share > 0.5 ? "#fff" : undefined }}
                    title={`${fmt(v)} of ${fmt(c.size)}`}>
                    {pct(share)}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function RetentionPage({ project }: { project: Project }) {
  const [spec, update] = useQuery(DEFAULT);
  const names = useEventNames(project.id);
  const ready = !!spec.start_event.event && !!spec.return_event.event;
  const result = useLoad(`${project.id}:${JSON.stringify(spec)}`, () =>
    ready ? post<RetentionResult>(`/api/v1/projects/${project.id}/query/retention`, spec) : Promise.resolve(undefined),
  );
  return (
    <section aria-labelledby="retention-title">
      <h1 id="retention-title">Retention</h1>
      <EventNames id="retention-event-names" names={names} />
      <div class="controls">
        <Field label="Cohort by">
          <input list="retention-event-names" value={spec.start_event.event ?? ""}
            onChange={(e) => update({ start_event: { event: e.currentTarget.value } })} />
        </Field>
        <Field label="Coming back with">
          <input list="retention-event-names" value={spec.return_event.event ?? ""}
            onChange={(e) => update({ return_event: { event: e.currentTarget.value } })} />
        </Field>
        <Field label="Period">
          <select value={spec.period} onChange={(e) => update({ period: e.currentTarget.value })}>
            {["day", "week", "month"].map((v) => <option value={v}>{v}</option>)}
          </select>
        </Field>
        <Field label="Cohort">
          <select value={spec.retention_type} onChange={(e) => update({ retention_type: e.currentTarget.value })}>
            <option value="first_time">first time</option>
            <option value="recurring">every time</option>
          </select>
        </Field>
      </div>
      {!ready ? <p class="muted">Name both events.</p> : null}
      <ErrorBox error={result.error} />
      {result.loading && ready && !result.data ? <Loading /> : null}
      {result.data ? <RetentionTable result={result.data} /> : null}
    </section>
  );
}
