// The public /api/v1 API as the page calls it: the session cookie goes along, writes
// carry the session's CSRF token, and an error answer becomes an ApiError naming the
// field and the rule, for the page to show.

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public field?: string,
  ) {
    super(message);
  }
}

let csrf: string | undefined;

export function setCsrf(token: string | undefined) {
  csrf = token;
}

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "unavailable", `the server cannot be reached (${String(e)})`);
  }
  const text = await response.text();
  let json: unknown = undefined;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      throw new ApiError(response.status, "invalid_answer", `not JSON: ${text.slice(0, 200)}`);
    }
  }
  if (!response.ok) {
    const e = (json as { error?: { code?: string; message?: string; field?: string } })?.error;
    if (response.status === 401) onSignedOut?.();
    throw new ApiError(response.status, e?.code ?? "error", e?.message ?? response.statusText, e?.field);
  }
  return json as T;
}

/** Called when an answer says the session has ended. */
export let onSignedOut: (() => void) | undefined;
export function whenSignedOut(f: () => void) {
  onSignedOut = f;
}

export const get = <T,>(path: string) => api<T>("GET", path);
export const post = <T,>(path: string, body: unknown) => api<T>("POST", path, body);
export const patch = <T,>(path: string, body: unknown) => api<T>("PATCH", path, body);
export const del = (path: string) => api("DELETE", path);

// Shapes of the answers the pages read.

export interface Member {
  id: string;
  email: string;
  name: string;
  access: { organization_role?: string; projects?: Record<string, string> };
}

export interface CurrentSession {
  member: Member;
  session_id: string;
  csrf_token: string;
  expires_at: string;
}

export interface Project {
  id: string;
  name: string;
  timezone: string;
}

export interface SeriesResult {
  series: string;
  label: string;
  breakdown_value?: string;
  data: (number | null)[];
  aggregated: number | null;
}

export interface TrendsResult {
  interval: string;
  timezone: string;
  buckets: string[];
  results: SeriesResult[];
  previous?: SeriesResult[];
  previous_buckets?: string[];
}

export interface FunnelStep {
  step: number;
  event: string;
  label: string;
  count: number;
  conversion_from_start: number | null;
  conversion_from_previous: number | null;
  dropped: number;
  median_seconds: number | null;
  dropped_persons?: string[];
}

export interface FunnelResult {
  results: { breakdown_value?: string; steps: FunnelStep[] }[];
}

export interface StoredEvent {
  event: string;
  distinct_id: string;
  timestamp: string;
  properties: Record<string, unknown>;
  person_id?: string;
  message_id?: string;
  [key: string]: unknown;
}

export interface InsightView {
  id: string;
  name: string;
  description: string;
  query: { kind: string; [key: string]: unknown };
  display: { chart: string };
}

export interface DashboardView {
  id: string;
  name: string;
  description: string;
  tiles: { insight_id: string; x: number; y: number; w: number; h: number; insight?: InsightView }[];
  date_range?: { from?: string; to?: string };
  properties: unknown[];
}

/** The role the member holds in `project`. */
export function roleIn(member: Member, project: string): string | undefined {
  return member.access.projects?.[project] ?? member.access.organization_role;
}
