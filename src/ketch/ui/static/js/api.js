// The Kubernetes and KFP APIs over fetch, and watches streamed as newline-delimited JSON.
export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.error)) || `HTTP ${status}`);
    this.status = status; this.body = body;
  }
}

// Once the page is leaving (Log out submitted, a link followed), a 401 from a request still in flight
// must not start a second navigation: it would abort the first (the logout's redirect to /login).
let leaving = false;
addEventListener("submit", (e) => { if (new URL(e.target.action, location.href).pathname === "/logout") leaving = true; });
addEventListener("pagehide", () => { leaving = true; });
function sessionEnded() {
  if (leaving) return;
  leaving = true;
  location.assign("/login");
}

export async function req(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    if (typeof body === "string" || body instanceof FormData || body instanceof Blob) init.body = body;
    else { init.body = JSON.stringify(body); init.headers["Content-Type"] ||= "application/json"; }
  }
  const r = await fetch(path, init);
  if (r.status === 401) sessionEnded();  // the session ended: log in again
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}
export const get = (p, h) => req("GET", p, undefined, h);
export const TABLE = { Accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" };

// ---- discovery: every served kind, with its URL parts
let kindsPromise = null;
export function kinds(refresh = false) {
  if (!kindsPromise || refresh) kindsPromise = loadKinds();
  return kindsPromise;
}
async function loadKinds() {
  const out = [];
  const add = (group, version, list) => {
    for (const r of list.resources || []) {
      if (r.name.includes("/")) continue;
      out.push({ group, version, plural: r.name, kind: r.kind, namespaced: r.namespaced, verbs: r.verbs || [],
        shortNames: r.shortNames || [], gv: group ? `${group}/${version}` : version });
    }
  };
  const [core, groups] = await Promise.all([get("/api/v1"), get("/apis")]);
  add("", "v1", core);
  // Every version of every group: a kind served only in a non-preferred version (KServe's v1alpha1
  // ServingRuntime beside v1beta1 InferenceService) must still appear; the preferred version wins a tie.
  const jobs = [];
  for (const g of groups.groups || []) {
    for (const v of g.versions || [g.preferredVersion]) {
      jobs.push(get(`/apis/${g.name}/${v.version}`).then(l => ({ g: g.name, v: v.version, pref: v.version === g.preferredVersion.version, l })).catch(() => null));
    }
  }
  const lists = (await Promise.all(jobs)).filter(Boolean).sort((a, b) => Number(b.pref) - Number(a.pref));
  const seen = new Set(out.map(k => `/${k.plural}`));
  for (const { g, v, l } of lists) {
    const fresh = { resources: (l.resources || []).filter(r => !seen.has(`${g}/${r.name}`)) };
    fresh.resources.forEach(r => seen.add(`${g}/${r.name}`));
    add(g, v, fresh);
  }
  out.sort((a, b) => a.kind.localeCompare(b.kind));
  return out;
}
export async function findKind(group, plural) {
  return (await kinds()).find(k => k.group === group && k.plural === plural) || null;
}

export function resPath(k, ns, name, sub) {
  let p = k.group ? `/apis/${k.group}/${k.version}` : `/api/${k.version}`;
  if (k.namespaced && ns) p += `/namespaces/${encodeURIComponent(ns)}`;
  p += `/${k.plural}`;
  if (name) p += `/${encodeURIComponent(name)}`;
  if (sub) p += `/${sub}`;
  return p;
}

// ---- watches: one long fetch per view, resumed from the last resourceVersion; relist only on 410.
export const watchState = { open: 0, listeners: new Set() };
function bump(d) { watchState.open += d; for (const f of watchState.listeners) f(watchState.open); }

export function listWatch(path, { query = "", table = false, onList, onEvent, onError }) {
  const ctrl = new AbortController();
  let stopped = false, rv = null, backoff = 500;
  const headers = table ? TABLE : {};
  const sep = (p) => (p.includes("?") ? "&" : "?");
  async function relist() {
    const lst = await get(path + (query ? sep(path) + query : ""), headers);
    rv = lst.metadata && lst.metadata.resourceVersion;
    onList(lst);
  }
  async function loop() {
    while (!stopped) {
      try {
        if (rv === null) await relist();
        const q = `watch=true&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(rv)}${query ? "&" + query : ""}`;
        const r = await fetch(path + sep(path) + q, { headers: { Accept: headers.Accept || "application/json" }, signal: ctrl.signal });
        if (r.status === 410) { rv = null; continue; }
        if (r.status === 401) { sessionEnded(); return; }
        if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
        bump(1);
        try {
          const reader = r.body.getReader();
          const dec = new TextDecoder();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += dec.decode(value, { stream: true });
            let i;
            while ((i = buf.indexOf("\n")) >= 0) {
              const line = buf.slice(0, i); buf = buf.slice(i + 1);
              if (!line.trim()) continue;
              const ev = JSON.parse(line);
              if (ev.type === "ERROR") {
                if (ev.object && ev.object.code === 410) { rv = null; }
                throw new ApiError(ev.object && ev.object.code || 500, ev.object);
              }
              const meta = ev.object.metadata || {};
              if (meta.resourceVersion) rv = meta.resourceVersion;
              if (ev.type !== "BOOKMARK") onEvent(ev.type, ev.object);
            }
          }
        } finally { bump(-1); }
        backoff = 500;
      } catch (e) {
        if (stopped || e.name === "AbortError") return;
        if (onError) onError(e);
        await new Promise(res => setTimeout(res, backoff));
        backoff = Math.min(backoff * 2, 30000);
      }
    }
  }
  loop();
  return { stop() { stopped = true; ctrl.abort(); } };
}

// A live list of objects keyed by namespace/name, kept current by one watch.
export function liveObjects(path, { query = "", onChange }) {
  const items = new Map();
  const key = o => `${o.metadata.namespace || ""}/${o.metadata.name}`;
  return listWatch(path, {
    query,
    onList(lst) { items.clear(); for (const o of lst.items || []) items.set(key(o), o); onChange([...items.values()]); },
    onEvent(type, o) {
      if (type === "DELETED") items.delete(key(o)); else items.set(key(o), o);
      onChange([...items.values()]);
    },
  });
}

// Many lists kept fresh by polling them one after another (one connection at a time), for pages that show
// many kinds at once: a browser keeps at most six HTTP/1.1 connections per origin, and a watch per kind
// would hold them all and starve every other request of the page. onChange(key, items) after each list;
// onRound() after each full round. A list that fails reads as empty.
export function pollLists(paths, { onChange, onRound, interval = 2000 }) {
  let stopped = false, timer = null;
  const round = async () => {
    for (const [key, path] of paths) {
      if (stopped) return;
      let items = [];
      try { items = (await get(path)).items || []; } catch { items = []; }
      if (!stopped) onChange(key, items);
    }
    if (stopped) return;
    if (onRound) onRound();
    timer = setTimeout(round, interval);
  };
  round();
  return { stop() { stopped = true; clearTimeout(timer); } };
}

// Follow a stream of text (a pod log) and call onText for each chunk.
export function follow(path, onText, onEnd) {
  const ctrl = new AbortController();
  (async () => {
    try {
      const r = await fetch(path, { signal: ctrl.signal });
      if (!r.ok) { onText(`[${r.status}] ${await r.text()}`); return; }
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        onText(dec.decode(value, { stream: true }));
      }
    } catch (e) { if (e.name !== "AbortError") onText(`\n[log stream error: ${e.message}]`); }
    if (onEnd) onEnd();
  })();
  return { stop() { ctrl.abort(); } };
}

// ---- KFP v2beta1
export const kfp = (p) => `/apis/v2beta1${p}`;
