// The SQL console: one read-only query over the project's `events` and `persons`.

import { useState } from "preact/hooks";
import { Project, post } from "../api";
import { setParams, useRoute } from "../route";
import { ErrorBox, Loading } from "../ui";

interface SqlResult {
  columns: { name: string; type: string }[];
  rows: Record<string, unknown>[];
  truncated: boolean;
}

export function SqlPage({ project }: { project: Project }) {
  const route = useRoute();
  const saved = route.params.get("sql") ?? "SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY n DESC LIMIT 20";
  const [text, setText] = useState(saved);
  const [result, setResult] = useState<SqlResult>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const run = async (e: Event) => {
    e.preventDefault();
    setParams({ sql: text });
    setBusy(true);
    setError(undefined);
    try {
      setResult(await post<SqlResult>(`/api/v1/projects/${project.id}/query/sql`, { query: text }));
    } catch (err) {
      setError(err);
      setResult(undefined);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby="sql-title">
      <h1 id="sql-title">SQL</h1>
      <form onSubmit={run} class="sql">
        <label class="field-label">
          <span>Query over events and persons (read only)</span>
          <textarea rows={6} cols={100} value={text} onInput={(e) => setText(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>Run</button>
      </form>
      <ErrorBox error={error} />
      {busy ? <Loading /> : null}
      {result ? (
        <div class="table-wrap">
          <table class="numbers" id="sql-result">
            <thead><tr>{result.columns.map((c) => <th scope="col" title={c.type}>{c.name}</th>)}</tr></thead>
            <tbody>{result.rows.map((r) => <tr>{result.columns.map((c) => <td>{String(r[c.name] ?? "")}</td>)}</tr>)}</tbody>
          </table>
          {result.truncated ? <p class="muted">Only the first rows are shown.</p> : null}
        </div>
      ) : null}
    </section>
  );
}
