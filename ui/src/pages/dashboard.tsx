// Dashboards: the project's dashboards, one shown as its grid of insights. Each tile
// runs its saved query through the public query API, with the dashboard's date range
// and conditions over the insight's own.

import { DashboardView, FunnelResult, InsightView, Project, TrendsResult, get, post } from "../api";
import { linkProps, navigate } from "../route";
import { ErrorBox, Loading, fmt, useLoad } from "../ui";
import { FunnelBars } from "./funnels";
import { RetentionTable } from "./retention";
import { TrendsView } from "./trends";

interface SqlResult {
  columns: { name: string }[];
  rows: Record<string, unknown>[];
}

async function runInsight(project: string, insight: InsightView, board: DashboardView): Promise<unknown> {
  const { kind, ...query } = insight.query;
  if (kind === "live_count") {
    const counts = await get<{ events: Record<string, { total: number }> }>(
      `/api/v1/projects/${project}/events/counts?last=${query.minutes}m`,
    );
    return Object.values(counts.events).reduce((n, c) => n + c.total, 0);
  }
  const body: Record<string, unknown> = { ...query };
  if (kind !== "sql") {
    if (board.date_range) body.date_range = board.date_range;
    if (board.properties.length) body.properties = [...((body.properties as unknown[]) ?? []), ...board.properties];
  }
  return post(`/api/v1/projects/${project}/query/${kind}`, body);
}

function Tile({ project, insight, board }: { project: string; insight: InsightView; board: DashboardView }) {
  const result = useLoad(`${insight.id}:${JSON.stringify(insight.query)}:${JSON.stringify(board.date_range)}`, () =>
    runInsight(project, insight, board),
  );
  const kind = insight.query.kind;
  const open =
    kind === "trends" || kind === "funnels"
      ? `/projects/${project}/${kind}?q=${encodeURIComponent(JSON.stringify((({ kind: _k, ...q }) => q)(insight.query)))}`
      : undefined;
  let body = null;
  if (result.data !== undefined) {
    if (kind === "live_count") body = <div class="big-number"><span class="value">{fmt(result.data as number)}</span></div>;
    else if (kind === "trends") body = <TrendsView result={result.data as TrendsResult} chart={insight.display.chart} />;
    else if (kind === "funnels") body = <FunnelBars steps={(result.data as FunnelResult).results[0]?.steps ?? []} project={project} />;
    else if (kind === "retention") body = <RetentionTable result={result.data as Parameters<typeof RetentionTable>[0]["result"]} />;
    else if (kind === "sql") {
      const r = result.data as SqlResult;
      body = (
        <table class="numbers">
          <thead><tr>{r.columns.map((c) => <th scope="col">{c.name}</th>)}</tr></thead>
          <tbody>{r.rows.map((row) => <tr>{r.columns.map((c) => <td>{String(row[c.name] ?? "")}</td>)}</tr>)}</tbody>
        </table>
      );
    } else body = <pre>{JSON.stringify(result.data, null, 2)}</pre>;
  }
  return (
    <article class="tile" aria-label={insight.name} data-insight={insight.name}>
      <h2>{open ? <a {...linkProps(open)}>{insight.name}</a> : insight.name}</h2>
      <ErrorBox error={result.error} />
      {result.loading && result.data === undefined ? <Loading /> : body}
    </article>
  );
}

export function DashboardPage({ project, id }: { project: Project; id?: string; role: string }) {
  const list = useLoad(`list:${project.id}`, () =>
    get<{ dashboards: { id: string; name: string }[] }>(`/api/v1/projects/${project.id}/dashboards`),
  );
  const chosen = id ?? list.data?.dashboards[0]?.id;
  const board = useLoad(`board:${project.id}:${chosen}`, () =>
    chosen ? get<DashboardView>(`/api/v1/projects/${project.id}/dashboards/${chosen}`) : Promise.resolve(undefined),
  );
  return (
    <section aria-labelledby="dashboard-title">
      <div class="title-row">
        <h1 id="dashboard-title">{board.data?.name ?? "Dashboards"}</h1>
        {list.data && list.data.dashboards.length > 1 ? (
          <select aria-label="Dashboard" value={chosen}
            onChange={(e) => navigate(`/projects/${project.id}/dashboards/${e.currentTarget.value}`)}>
            {list.data.dashboards.map((d) => <option value={d.id}>{d.name}</option>)}
          </select>
        ) : null}
      </div>
      <ErrorBox error={list.error ?? board.error} />
      {list.data && list.data.dashboards.length === 0 ? <p>No dashboards yet.</p> : null}
      {board.data ? (
        <div class="grid">
          {board.data.tiles.map((t) =>
            t.insight ? (
              <div style={{ gridColumn: `${t.x + 1} / span ${t.w}`, gridRow: `${t.y + 1} / span ${t.h}` }}>
                <Tile project={project.id} insight={t.insight} board={board.data!} />
              </div>
            ) : null,
          )}
        </div>
      ) : board.loading || list.loading ? <Loading /> : null}
    </section>
  );
}
