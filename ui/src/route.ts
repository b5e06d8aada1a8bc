// The page's state lives in the URL: a path naming the screen and its project, and a
// query string with the screen's settings, so a link reproduces what one sees.

import { useEffect, useState } from "preact/hooks";

export interface Route {
  path: string[];
  params: URLSearchParams;
}

function current(): Route {
  return {
    path: location.pathname.split("/").filter(Boolean).map(decodeURIComponent),
    params: new URLSearchParams(location.search),
  };
}

const listeners = new Set<() => void>();

/** Goes to `url` (path and query) without reloading; `replace` keeps history short. */
export function navigate(url: string, replace = false) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  listeners.forEach((l) => l());
}

/** Sets the current URL's query parameters (the screen's settings). */
export function setParams(values: Record<string, string | undefined>) {
  const params = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || v === "") params.delete(k);
    else params.set(k, v);
  }
  const query = params.toString();
  navigate(location.pathname + (query ? `?${query}` : ""), true);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const update = () => setRoute(current());
    listeners.add(update);
    addEventListener("popstate", update);
    return () => {
      listeners.delete(update);
      removeEventListener("popstate", update);
    };
  }, []);
  return route;
}

/**
 * A screen's query, kept as JSON in the URL's `q`: its fields over `defaults` (the
 * defaults alone when `q` is absent or unreadable), and the setter of some of them.
 */
export function useQuery<T extends object>(defaults: T): [T, (next: Partial<T>) => void] {
  const route = useRoute();
  let query = defaults;
  const q = route.params.get("q");
  if (q) {
    try {
      query = { ...defaults, ...JSON.parse(q) };
    } catch {
      query = defaults;
    }
  }
  return [query, (next) => setParams({ q: JSON.stringify({ ...query, ...next }) })];
}

/** A link that navigates in the page (and still opens in a new tab). */
export function linkProps(href: string) {
  return {
    href,
    onClick: (e: MouseEvent) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      navigate(href);
    },
  };
}
