// Funnels: steps, window and range; bars with counts, conversion and drop-off per
// step, median time to convert, and the persons who dropped off. The query is `q`.

import { FunnelResult, FunnelStep, Project, post } from "../api";
import { linkProps, useQuery } from "../route";
import { ErrorBox, Field, Loading, fmt, pct, useLoad } from "../ui";
import { EventNames, useEventNames } from "./events";

interface FunnelSpec {
  steps: { event: string }[];
  date_range: { from?: string };
  window?: number;
  window_unit?: string;
  persons_limit?: number;
}

const DEFAULT: FunnelSpec = { steps: [{ event: "" }, { event: "" }], date_range: { from: "-30d" }, persons_limit: 20 };

function duration(seconds: number | null): string {
  if (seconds === null) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

export function FunnelBars({ steps, project }: { steps: FunnelStep[]; project: string }) {
  const first = steps[0]?.count || 1;
  return (
    <div class="funnel">
      <table id="funnel-table" class="numbers">
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">Persons</th>
            <th scope="col">Conversion</th>
            <th scope="col">From previous</th>
            <th scope="col">Dropped off</th>
            <th scope="col">Median time</th>
            <th scope="col" class="bar-col">Of the first step</th>
          </tr>
        </thead>
        <tbody>
          {steps.map((s) => (
            <tr data-step={s.step}>
              <th scope="row">{s.step + 1}. {s.label}</th>
              <td class="count">{fmt(s.count)}</td>
              <td class="conversion">{pct(s.conversion_from_start)}</td>
              <td>{pct(s.conversion_from_previous)}</td>
              <td class="dropped">
                {fmt(s.dropped)}
                {s.dropped_persons?.length ? (
                  <details>
                    <summary>who</summary>
                    <ul>
                      {s.dropped_persons.map((p) => (
                        <li><a {...linkProps(`/projects/${project}/persons/${p}`)}>{p}</a></li>
                      ))}
                    </ul>
                  </details>
                ) : null}
              </td>
              <td>{duration(s.median_seconds)}</td>
              <td class="bar-col">
                <div class="bar" style={{ width: `${(100 * s.count) / first}%` }} aria-hidden="true" />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function FunnelsPage({ project }: { project: Project }) {
  const [spec, update] = useQuery(DEFAULT);
  const names = useEventNames(project.id);
  const ready = spec.steps.length >= 2 && spec.steps.every((s) => s.event);
  const key = JSON.stringify(spec);
  const result = useLoad(`${project.id}:${key}`, () =>
    ready ? post<FunnelResult>(`/api/v1/projects/${project.id}/query/funnels`, spec) : Promise.resolve(undefined),
  );
  return (
    <section aria-labelledby="funnels-title">
      <h1 id="funnels-title">Funnels</h1>
      <EventNames id="funnel-event-names" names={names} />
      <div class="controls">
        {spec.steps.map((s, i) => (
          <Field label={`Step ${i + 1}`}>
            <input list="funnel-event-names" value={s.event} required
              onChange={(e) => update({ steps: spec.steps.map((o, j) => (j === i ? { event: e.currentTarget.value } : o)) })} />
          </Field>
        ))}
        <button type="button" onClick={() => update({ steps: [...spec.steps, { event: "" }] })}>Add step</button>
        {spec.steps.length > 2 ? (
          <button type="button" onClick={() => update({ steps: spec.steps.slice(0, -1) })}>Remove last step</button>
        ) : null}
        <Field label="Date range">
          <select value={spec.date_range.from ?? ""} onChange={(e) => update({ date_range: { from: e.currentTarget.value } })}>
            {[["-7d", "Last 7 days"], ["-30d", "Last 30 days"], ["-90d", "Last 90 days"]].map(([v, l]) => <option value={v}>{l}</option>)}
          </select>
        </Field>
        <Field label="Conversion window">
          <select value={spec.window ? `${spec.window} ${spec.window_unit ?? "day"}` : ""}
            onChange={(e) => {
              const [n, unit] = e.currentTarget.value.split(" ");
              update(n ? { window: Number(n), window_unit: unit } : { window: undefined, window_unit: undefined });
            }}>
            {[["", "Default (14 days)"], ["1 hour", "1 hour"], ["1 day", "1 day"], ["7 day", "7 days"], ["30 day", "30 days"]].map(([v, l]) => <option value={v}>{l}</option>)}
          </select>
        </Field>
      </div>
      {!ready ? <p class="muted">Name every step's event.</p> : null}
      <ErrorBox error={result.error} />
      {result.loading && ready && !result.data ? <Loading /> : null}
      {result.data?.results.map((r) => (
        <>
          {r.breakdown_value !== undefined ? <h2>{r.breakdown_value}</h2> : null}
          <FunnelBars steps={r.steps} project={project.id} />
        </>
      ))}
    </section>
  );
}
