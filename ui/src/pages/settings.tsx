// Settings: the project (renamed, its time zone; a new project with its write key shown
// once), the project's keys (a new secret shown once; only admins see the control,
// and the server refuses anyone else), the team's members and invitations, and one's
// own sessions.

import { useState } from "preact/hooks";
import { CurrentSession, Member, Project, del, get, patch, post } from "../api";
import { linkProps } from "../route";
import { ErrorBox, Field, Loading, useLoad } from "../ui";

interface KeyView {
  id: string;
  name: string;
  kind: string;
  role?: string;
  display_prefix: string;
  created_at: string;
  revoked_at?: string;
}

function Keys({ project, admin }: { project: Project; admin: boolean }) {
  const keys = useLoad(`keys:${project.id}`, () =>
    admin ? get<{ keys: KeyView[] }>(`/api/v1/projects/${project.id}/keys`) : Promise.resolve(undefined),
  );
  const [name, setName] = useState("");
  const [role, setRole] = useState("viewer");
  const [created, setCreated] = useState<string>();
  const [error, setError] = useState<unknown>();
  if (!admin) return <p class="muted">Keys are managed by admins.</p>;
  const create = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      const k = await post<{ key: string }>(`/api/v1/projects/${project.id}/keys`, { name, role });
      setCreated(k.key);
      setName("");
      keys.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <form class="controls" id="create-key" onSubmit={create} aria-label="Create a secret key">
        <Field label="Key name"><input required value={name} onInput={(e) => setName(e.currentTarget.value)} /></Field>
        <Field label="Role">
          <select value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            {["admin", "marketer", "analyst", "viewer"].map((r) => <option value={r}>{r}</option>)}
          </select>
        </Field>
        <button type="submit">Create key</button>
      </form>
      <ErrorBox error={error ?? keys.error} />
      {created ? (
        <p class="secret" role="status">New key (shown once; store it now): <code id="new-key">{created}</code></p>
      ) : null}
      <table class="numbers" id="keys-table">
        <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Role</th><th scope="col">Key</th><th scope="col">State</th><th scope="col"></th></tr></thead>
        <tbody>
          {keys.data?.keys.map((k) => (
            <tr>
              <th scope="row">{k.name}</th><td>{k.kind}</td><td>{k.role ?? ""}</td><td><code>{k.display_prefix}…</code></td>
              <td>{k.revoked_at ? "revoked" : "active"}</td>
              <td>{k.revoked_at ? null : (
                <button type="button" class="link" onClick={async () => {
                  try { await del(`/api/v1/projects/${project.id}/keys/${k.id}`); keys.reload(); } catch (err) { setError(err); }
                }}>Revoke</button>
              )}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Members({ project, manager }: { project: Project; manager: boolean }) {
  const members = useLoad("members", () => get<{ members: Member[] }>("/api/v1/members"));
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("viewer");
  const [link, setLink] = useState<string>();
  const [error, setError] = useState<unknown>();
  const invite = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      const made = await post<{ link: string }>("/api/v1/invites", {
        email,
        name: email.split("@")[0],
        access: { projects: { [project.id]: role } },
      });
      setLink(new URL(made.link, location.href).toString());
      setEmail("");
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <table class="numbers" id="members-table">
        <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role here</th></tr></thead>
        <tbody>
          {members.data?.members.map((m) => (
            <tr><th scope="row">{m.name}</th><td>{m.email}</td><td>{m.access.projects?.[project.id] ?? m.access.organization_role ?? "–"}</td></tr>
          ))}
        </tbody>
      </table>
      {manager ? (
        <form class="controls" onSubmit={invite} aria-label="Invite a member">
          <Field label="Email"><input type="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} /></Field>
          <Field label="Role in this project">
            <select value={role} onChange={(e) => setRole(e.currentTarget.value)}>
              {["admin", "marketer", "analyst", "viewer"].map((r) => <option value={r}>{r}</option>)}
            </select>
          </Field>
          <button type="submit">Invite</button>
        </form>
      ) : null}
      {link ? <p class="secret" role="status">Send this link (works once): <code id="invite-link">{link}</code></p> : null}
      <ErrorBox error={error ?? members.error} />
    </>
  );
}

function Providers({ project }: { project: Project }) {
  const providers = useLoad(`providers:${project.id}`, () =>
    get<{ providers: { provider: string; settings: Record<string, unknown>; updated_at: string }[] }>(
      `/api/v1/projects/${project.id}/push/providers`,
    ),
  );
  const [copied, setCopied] = useState(false);
  if (providers.error) return <ErrorBox error={providers.error} />;
  if (!providers.data) return <Loading />;
  if (providers.data.providers.length === 0) return <p class="muted">No push provider is set up (PUT /api/v1/projects/{"{id}"}/push/providers/…).</p>;
  return (
    <table class="props" id="providers-table">
      <tbody>
        {providers.data.providers.map((p) => (
          <tr>
            <th scope="row">{p.provider}</th>
            <td>
              {Object.entries(p.settings).map(([k, v]) => (
                <div>
                  {k}: <code class={k === "public_key" ? "vapid" : undefined}>{String(v)}</code>
                  {k === "public_key" ? (
                    <button type="button" class="link" onClick={async () => {
                      await navigator.clipboard?.writeText(String(v)).catch(() => undefined);
                      setCopied(true);
                    }}>{copied ? "Copied" : "Copy"}</button>
                  ) : null}
                </div>
              ))}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Warnings({ project }: { project: Project }) {
  const warnings = useLoad(`warnings:${project.id}`, () =>
    get<{ warnings: { id: number; field: string; reason: string; dialect: string; at: string; message_id?: string }[] }>(
      `/api/v1/projects/${project.id}/ingestion-warnings?limit=50`,
    ),
  );
  if (warnings.error) return <ErrorBox error={warnings.error} />;
  if (!warnings.data) return <Loading />;
  if (warnings.data.warnings.length === 0) return <p class="muted">No message was dropped.</p>;
  return (
    <table class="numbers" id="warnings-table">
      <thead><tr><th scope="col">When</th><th scope="col">Field</th><th scope="col">Rule</th><th scope="col">Client</th></tr></thead>
      <tbody>
        {warnings.data.warnings.map((w) => (
          <tr><td>{new Date(w.at).toLocaleString()}</td><td>{w.field}</td><td>{w.reason}</td><td>{w.dialect}</td></tr>
        ))}
      </tbody>
    </table>
  );
}

function Sessions() {
  const sessions = useLoad("sessions", () =>
    get<{ sessions: { id: string; created_at: string; last_seen_at: string; live: boolean; current: boolean; user_agent?: string; ip?: string }[] }>(
      "/api/v1/session/sessions",
    ),
  );
  const [error, setError] = useState<unknown>();
  return (
    <>
      <ErrorBox error={error ?? sessions.error} />
      <table class="numbers" id="sessions-table">
        <thead><tr><th scope="col">Signed in</th><th scope="col">Last used</th><th scope="col">From</th><th scope="col"></th></tr></thead>
        <tbody>
          {sessions.data?.sessions.filter((s) => s.live).map((s) => (
            <tr>
              <td>{new Date(s.created_at).toLocaleString()}{s.current ? " (this one)" : ""}</td>
              <td>{new Date(s.last_seen_at).toLocaleString()}</td>
              <td>{s.ip ?? ""} {s.user_agent ?? ""}</td>
              <td>{s.current ? null : (
                <button type="button" class="link" onClick={async () => {
                  try { await del(`/api/v1/session/sessions/${s.id}`); sessions.reload(); } catch (err) { setError(err); }
                }}>End</button>
              )}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/** Tells the shell to read the project list again (after a project was made or renamed). */
function projectsChanged() {
  dispatchEvent(new Event("appizer:projects"));
}

function Projects({ project, admin, manager }: { project: Project; admin: boolean; manager: boolean }) {
  const [name, setName] = useState(project.name);
  const [timezone, setTimezone] = useState(project.timezone);
  const [saved, setSaved] = useState(false);
  const [error, setError] = useState<unknown>();
  const [newName, setNewName] = useState("");
  const [newZone, setNewZone] = useState(project.timezone);
  const [created, setCreated] = useState<{ id: string; key: string }>();
  const save = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setSaved(false);
    try {
      await patch(`/api/v1/projects/${project.id}`, { name, timezone });
      setSaved(true);
      projectsChanged();
    } catch (err) {
      setError(err);
    }
  };
  const create = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      const p = await post<{ project: Project; write_key: { key: string } }>("/api/v1/projects", {
        name: newName,
        timezone: newZone,
      });
      setCreated({ id: p.project.id, key: p.write_key.key });
      setNewName("");
      projectsChanged();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      {admin ? (
        <form class="controls" onSubmit={save} aria-label="This project">
          <Field label="Project name">
            <input required maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Field label="Time zone (IANA)">
            <input required value={timezone} onInput={(e) => setTimezone(e.currentTarget.value)} />
          </Field>
          <button type="submit">Save project</button>
          {saved ? <span role="status">Saved.</span> : null}
        </form>
      ) : null}
      {manager ? (
        <form class="controls" onSubmit={create} aria-label="New project">
          <Field label="New project name">
            <input required maxLength={200} value={newName} onInput={(e) => setNewName(e.currentTarget.value)} />
          </Field>
          <Field label="Its time zone">
            <input required value={newZone} onInput={(e) => setNewZone(e.currentTarget.value)} />
          </Field>
          <button type="submit">Create project</button>
        </form>
      ) : null}
      {created ? (
        <div class="secret" role="status">
          <p>Project created. Its write key, shown only now:</p>
          <code id="new-project-key">{created.key}</code>
          <p><a {...linkProps(`/projects/${created.id}/dashboards`)}>Open the new project</a></p>
        </div>
      ) : null}
      <ErrorBox error={error} />
    </>
  );
}

export function SettingsPage({ project, role, session }: { project: Project; role: string; session: CurrentSession }) {
  const admin = role === "admin";
  const manager = session.member.access.organization_role === "admin";
  if (!session) return <Loading />;
  return (
    <section aria-labelledby="settings-title">
      <h1 id="settings-title">Settings · {project.name}</h1>
      <p class="muted">Time zone {project.timezone} · project id <code>{project.id}</code></p>
      <h2>Projects</h2>
      <Projects key={project.id} project={project} admin={admin} manager={manager} />
      <h2>Keys</h2>
      <Keys project={project} admin={admin} />
      <h2>Push providers</h2>
      <Providers project={project} />
      <h2>Ingestion warnings</h2>
      <Warnings project={project} />
      <h2>Members</h2>
      <Members project={project} manager={manager} />
      <h2>Your sessions</h2>
      <Sessions />
    </section>
  );
}
