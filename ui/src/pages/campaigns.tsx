// Campaigns: the list; a new campaign (audience from segments, variants, a control
// group, a goal, when) previewed before it is saved; a campaign's actions and its
// report, with each variant's rates, 95% intervals, lift against the control and the
// tests' significance.

import { useState } from "preact/hooks";
import { Project, get, post } from "../api";
import { linkProps, navigate } from "../route";
import { ErrorBox, Field, Loading, fmt, pct, useLoad } from "../ui";

interface CampaignView {
  id: string;
  name: string;
  state: string;
  runs?: { key: string; state: string; assigned: number; queued: number }[];
  updated_at: string;
}

interface Rate { successes: number; trials: number; rate: number; low: number; high: number }
interface Test { statistic: number; p_value: number; significant: boolean; sample_large_enough: boolean }

interface GroupReport {
  group: string;
  control: boolean;
  assigned: number;
  sent: number;
  failed: number;
  delivered: number;
  opened: number;
  converted?: number | null;
  delivery_rate: Rate;
  open_rate: Rate;
  conversion_rate?: Rate | null;
  against_control?: { lift: number | null; test: Test | null } | null;
}

interface Report {
  groups: GroupReport[];
  goal?: { event: string; window_hours: number } | null;
  across_variants?: Test | null;
  sample_large_enough: boolean;
}

interface Preview {
  persons: number;
  devices: number;
  groups: { group: string; persons: number }[];
  sample: { group: string; variant: string; title: string; body: string }[];
}

const rate = (r?: Rate | null) => (r ? `${pct(r.rate)} (${pct(r.low)}–${pct(r.high)})` : "–");

function ReportTable({ report }: { report: Report }) {
  return (
    <>
      <table class="numbers" id="campaign-report">
        <thead>
          <tr>
            <th scope="col">Group</th><th scope="col">Assigned</th><th scope="col">Sent</th>
            <th scope="col">Failed</th><th scope="col">Delivered</th><th scope="col">Opened</th>
            <th scope="col">Open rate (95%)</th>
            {report.goal ? <><th scope="col">Converted</th><th scope="col">Conversion (95%)</th><th scope="col">Lift vs control</th><th scope="col">p</th></> : null}
          </tr>
        </thead>
        <tbody>
          {report.groups.map((g) => (
            <tr data-group={g.group}>
              <th scope="row">{g.group}</th>
              <td class="assigned">{fmt(g.assigned)}</td><td class="sent">{fmt(g.sent)}</td><td>{fmt(g.failed)}</td>
              <td>{fmt(g.delivered)}</td><td>{fmt(g.opened)}</td><td>{rate(g.open_rate)}</td>
              {report.goal ? (
                <>
                  <td>{fmt(g.converted)}</td>
                  <td>{rate(g.conversion_rate)}</td>
                  <td>{g.against_control?.lift != null ? pct(g.against_control.lift) : "–"}</td>
                  <td>{g.against_control?.test ? `${g.against_control.test.p_value.toFixed(3)}${g.against_control.test.significant ? " ✓ significant" : ""}` : "–"}</td>
                </>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
      {report.across_variants ? (
        <p>Across variants: χ² = {report.across_variants.statistic.toFixed(2)}, p = {report.across_variants.p_value.toFixed(3)}
          {report.across_variants.significant ? " (significant)" : " (not significant)"}</p>
      ) : null}
      <p class="muted">{report.sample_large_enough ? "The sample is large enough to call." : "The sample is too small to call yet."}</p>
    </>
  );
}

function NewCampaign({ project }: { project: Project }) {
  const segments = useLoad(`segments:${project.id}`, () =>
    get<{ segments: { id: string; name: string; member_count?: number }[] }>(`/api/v1/projects/${project.id}/segments`),
  );
  const [name, setName] = useState("");
  const [segment, setSegment] = useState("");
  const [variants, setVariants] = useState([{ name: "A", title: "", body: "" }]);
  const [control, setControl] = useState(0);
  const [goal, setGoal] = useState("");
  const [preview, setPreview] = useState<Preview>();
  const [error, setError] = useState<unknown>();
  const body = () => ({
    name,
    audience: { segments: segment ? [segment] : [] },
    when: { type: "now" },
    variants: variants.map((v) => ({ ...v, weight: 1 })),
    control_percent: control,
    ...(goal ? { goal: { event: goal } } : {}),
  });
  const run = async (f: () => Promise<void>) => {
    setError(undefined);
    try { await f(); } catch (e) { setError(e); }
  };
  const setVariant = (i: number, v: Partial<{ name: string; title: string; body: string }>) =>
    setVariants(variants.map((o, j) => (j === i ? { ...o, ...v } : o)));
  return (
    <form class="campaign-form" aria-label="New campaign" onSubmit={(e) => {
      e.preventDefault();
      run(async () => {
        const made = await post<{ id: string }>(`/api/v1/projects/${project.id}/campaigns`, body());
        navigate(`/projects/${project.id}/campaigns/${made.id}`);
      });
    }}>
      <h2>New campaign</h2>
      <div class="controls">
        <Field label="Campaign name"><input required value={name} onInput={(e) => setName(e.currentTarget.value)} /></Field>
        <Field label="Audience">
          <select value={segment} onChange={(e) => setSegment(e.currentTarget.value)}>
            <option value="">Everyone with a device</option>
            {segments.data?.segments.map((s) => <option value={s.id}>{s.name}</option>)}
          </select>
        </Field>
        <Field label="Control group %">
          <input type="number" min={0} max={90} value={control} onInput={(e) => setControl(Number(e.currentTarget.value))} />
        </Field>
        <Field label="Goal event (optional)"><input value={goal} onInput={(e) => setGoal(e.currentTarget.value)} /></Field>
      </div>
      {variants.map((v, i) => (
        <fieldset class="series">
          <legend>Variant {v.name}</legend>
          <Field label={`Variant ${i + 1} title`}>
            <input required value={v.title} onInput={(e) => setVariant(i, { title: e.currentTarget.value })} />
          </Field>
          <Field label={`Variant ${i + 1} body`}>
            <input required size={40} value={v.body} onInput={(e) => setVariant(i, { body: e.currentTarget.value })} />
          </Field>
        </fieldset>
      ))}
      <div class="controls">
        {variants.length < 8 ? (
          <button type="button" onClick={() => setVariants([...variants, { name: String.fromCharCode(65 + variants.length), title: "", body: "" }])}>
            Add variant
          </button>
        ) : null}
        <button type="button" onClick={() => run(async () => setPreview(await post<Preview>(`/api/v1/projects/${project.id}/campaigns/preview`, body())))}>
          Preview
        </button>
        <button type="submit">Save draft</button>
      </div>
      <ErrorBox error={error ?? segments.error} />
      {preview ? (
        <div id="campaign-preview">
          <p><strong id="preview-persons">{fmt(preview.persons)}</strong> persons, {fmt(preview.devices)} devices:{" "}
            {preview.groups.map((g) => `${g.group} ${fmt(g.persons)}`).join(", ")}</p>
          <ul>{preview.sample.map((s) => <li>{s.variant}: <strong>{s.title}</strong> {s.body}</li>)}</ul>
        </div>
      ) : null}
    </form>
  );
}

function Campaign({ project, id, canWrite }: { project: Project; id: string; canWrite: boolean }) {
  const campaign = useLoad(`campaign:${id}`, () => get<CampaignView>(`/api/v1/projects/${project.id}/campaigns/${id}`));
  const report = useLoad(`report:${id}:${campaign.data?.state}`, () =>
    get<Report>(`/api/v1/projects/${project.id}/campaigns/${id}/report`),
  );
  const [error, setError] = useState<unknown>();
  const act = async (action: string) => {
    setError(undefined);
    try {
      await post(`/api/v1/projects/${project.id}/campaigns/${id}/${action}`, {});
      campaign.reload();
    } catch (e) {
      setError(e);
    }
  };
  const actions: Record<string, string[]> = {
    draft: ["schedule"], scheduled: ["pause", "cancel"], running: ["pause", "cancel"], paused: ["resume", "cancel"],
  };
  const c = campaign.data;
  return (
    <section aria-labelledby="campaign-title">
      <p><a {...linkProps(`/projects/${project.id}/campaigns`)}>All campaigns</a></p>
      <ErrorBox error={campaign.error ?? error} />
      {!c ? <Loading /> : (
        <>
          <h1 id="campaign-title">{c.name}</h1>
          <p>State: <strong id="campaign-state">{c.state}</strong></p>
          {canWrite ? (
            <div class="controls">
              {(actions[c.state] ?? []).map((a) => <button type="button" onClick={() => act(a)}>{a[0].toUpperCase() + a.slice(1)}</button>)}
              <button type="button" class="link" onClick={() => { campaign.reload(); report.reload(); }}>Refresh</button>
            </div>
          ) : null}
          <h2>Report</h2>
          <ErrorBox error={report.error} />
          {report.data ? <ReportTable report={report.data} /> : <Loading />}
        </>
      )}
    </section>
  );
}

export function CampaignsPage({ project, id, role }: { project: Project; id?: string; role: string }) {
  const canWrite = role === "admin" || role === "marketer";
  const list = useLoad(`campaigns:${project.id}:${id ?? ""}`, () =>
    get<{ campaigns: CampaignView[] }>(`/api/v1/projects/${project.id}/campaigns`),
  );
  if (id) return <Campaign project={project} id={id} canWrite={canWrite} />;
  return (
    <section aria-labelledby="campaigns-title">
      <h1 id="campaigns-title">Campaigns</h1>
      <ErrorBox error={list.error} />
      {list.loading && !list.data ? <Loading /> : null}
      <table class="numbers" id="campaigns-table">
        <thead><tr><th scope="col">Name</th><th scope="col">State</th><th scope="col">Runs</th></tr></thead>
        <tbody>
          {list.data?.campaigns.map((c) => (
            <tr>
              <th scope="row"><a {...linkProps(`/projects/${project.id}/campaigns/${c.id}`)}>{c.name}</a></th>
              <td>{c.state}</td><td>{c.runs?.length ?? 0}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {canWrite ? <NewCampaign project={project} /> : null}
    </section>
  );
}
