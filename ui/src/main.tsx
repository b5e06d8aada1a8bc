// The dashboard: sign-in, then the screens of one project, each with its state in the
// URL. Every call is the public /api/v1 API with the session cookie.

import "uplot/dist/uPlot.min.css";
import "./app.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, CurrentSession, Project, del, get, post, roleIn, setCsrf, whenSignedOut } from "./api";
import { linkProps, navigate, useRoute } from "./route";
import { ErrorBox, Field, Loading } from "./ui";
import { CampaignsPage } from "./pages/campaigns";
import { LifecyclePage, StickinessPage } from "./pages/activity";
import { DashboardPage } from "./pages/dashboard";
import { EventsPage } from "./pages/events";
import { FunnelsPage } from "./pages/funnels";
import { LivePage } from "./pages/live";
import { PersonsPage } from "./pages/persons";
import { RetentionPage } from "./pages/retention";
import { SegmentsPage } from "./pages/segments";
import { SettingsPage } from "./pages/settings";
import { SqlPage } from "./pages/sql";
import { TrendsPage } from "./pages/trends";

function SignIn({ onSignedIn }: { onSignedIn: (s: CurrentSession) => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      onSignedIn(await post<CurrentSession>("/api/v1/session", { email, password }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="sign-in">
      <h1>Appizer</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <Field label="Email">
          <input type="email" name="email" autocomplete="username" required value={email}
            onInput={(e) => setEmail(e.currentTarget.value)} />
        </Field>
        <Field label="Password">
          <input type="password" name="password" autocomplete="current-password" required value={password}
            onInput={(e) => setPassword(e.currentTarget.value)} />
        </Field>
        <button type="submit" disabled={busy}>Sign in</button>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

function AcceptInvite({ onSignedIn }: { onSignedIn: (s: CurrentSession) => void }) {
  const token = new URLSearchParams(location.hash.slice(1)).get("token") ?? "";
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>();
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const session = await post<CurrentSession>("/api/v1/invites/accept", { token, password });
      navigate("/", true);
      onSignedIn(session);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <main class="sign-in">
      <h1>Join Appizer</h1>
      <form onSubmit={submit} aria-label="Accept the invitation">
        <Field label="Choose a password (10 characters or more)">
          <input type="password" autocomplete="new-password" required minLength={10} value={password}
            onInput={(e) => setPassword(e.currentTarget.value)} />
        </Field>
        <button type="submit">Join</button>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

const SCREENS: [string, string][] = [
  ["dashboards", "Dashboards"],
  ["trends", "Trends"],
  ["funnels", "Funnels"],
  ["retention", "Retention"],
  ["stickiness", "Stickiness"],
  ["lifecycle", "Lifecycle"],
  ["live", "Live events"],
  ["events", "Events"],
  ["persons", "Persons"],
  ["segments", "Segments"],
  ["campaigns", "Campaigns"],
  ["sql", "SQL"],
  ["settings", "Settings"],
];

function Shell({ session, onSignOut }: { session: CurrentSession; onSignOut: () => void }) {
  const route = useRoute();
  const [projects, setProjects] = useState<Project[]>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    const load = () => get<{ projects: Project[] }>("/api/v1/projects").then((p) => setProjects(p.projects), setError);
    load();
    addEventListener("appizer:projects", load);
    return () => removeEventListener("appizer:projects", load);
  }, []);
  if (error) return <main><ErrorBox error={error} /></main>;
  if (!projects) return <main><Loading /></main>;
  if (projects.length === 0) return <main><p>You have no role in any project yet; ask an admin.</p></main>;
  const [first, projectId, screen = "dashboards", ...rest] = route.path;
  const project = projects.find((p) => p.id === projectId);
  if (first !== "projects" || !project) {
    navigate(`/projects/${projects[0].id}/dashboards`, true);
    return <main><Loading /></main>;
  }
  const role = roleIn(session.member, project.id) ?? "viewer";
  const base = `/projects/${project.id}`;
  const page = (() => {
    switch (screen) {
      case "dashboards": return <DashboardPage project={project} id={rest[0]} role={role} />;
      case "trends": return <TrendsPage project={project} role={role} />;
      case "funnels": return <FunnelsPage project={project} />;
      case "retention": return <RetentionPage project={project} />;
      case "stickiness": return <StickinessPage project={project} />;
      case "lifecycle": return <LifecyclePage project={project} />;
      case "events": return <EventsPage project={project} />;
      case "sql": return <SqlPage project={project} />;
      case "live": return <LivePage project={project} />;
      case "campaigns": return <CampaignsPage project={project} id={rest[0]} role={role} />;
      case "segments": return <SegmentsPage project={project} id={rest[0]} role={role} />;
      case "persons": return <PersonsPage project={project} personId={rest[0]} />;
      case "settings": return <SettingsPage project={project} role={role} session={session} />;
      default: return <p>No such screen.</p>;
    }
  })();
  return (
    <div class="shell">
      <header>
        <strong class="brand">Appizer</strong>
        <label class="project-picker">
          <span class="sr-only">Project</span>
          <select aria-label="Project" value={project.id}
            onChange={(e) => navigate(`/projects/${e.currentTarget.value}/${screen}`)}>
            {projects.map((p) => <option value={p.id}>{p.name}</option>)}
          </select>
        </label>
        <nav aria-label="Screens">
          {SCREENS.map(([id, label]) => (
            <a {...linkProps(`${base}/${id}`)} aria-current={screen === id ? "page" : undefined}>{label}</a>
          ))}
        </nav>
        <span class="me">
          {session.member.name} ({role})
          <button type="button" class="link" onClick={onSignOut}>Sign out</button>
        </span>
      </header>
      <main>{page}</main>
    </div>
  );
}

function App() {
  const [session, setSession] = useState<CurrentSession | null>();
  const [error, setError] = useState<unknown>();
  const signedIn = (s: CurrentSession) => {
    setCsrf(s.csrf_token);
    setSession(s);
  };
  useEffect(() => {
    whenSignedOut(() => setSession(null));
    get<CurrentSession>("/api/v1/session").then(signedIn, (e) => {
      if (e instanceof ApiError && e.status === 401) setSession(null);
      else setError(e);
    });
  }, []);
  if (error) return <main><ErrorBox error={error} /></main>;
  if (session === undefined) return <main><Loading /></main>;
  if (session === null) {
    if (location.pathname === "/accept-invite") return <AcceptInvite onSignedIn={signedIn} />;
    return <SignIn onSignedIn={signedIn} />;
  }
  const signOut = async () => {
    try {
      await del("/api/v1/session");
    } finally {
      setCsrf(undefined);
      setSession(null);
    }
  };
  return <Shell session={session} onSignOut={signOut} />;
}

addEventListener("error", (e) => {
  const box = document.getElementById("fatal");
  if (box) {
    box.setAttribute("role", "alert");
    box.textContent = `The page failed: ${e.message}`;
  }
});

render(<App />, document.getElementById("app")!);
