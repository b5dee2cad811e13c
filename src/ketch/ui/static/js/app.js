// The shell: navigation, namespace switcher, search box and a hash router. Each page is a function
// (root, params, ctx) that draws into root and returns a cleanup that stops its watches.
import { h, mount, errorBox, Cell } from "./dom.js";
import { get, liveObjects, watchState } from "./api.js";
import * as resources from "./pages/resources.js";
import * as pipelines from "./pages/pipelines.js";
import * as training from "./pages/training.js";
import * as tuning from "./pages/tuning.js";
import * as serving from "./pages/serving.js";
import * as home from "./pages/home.js";
import * as contributors from "./pages/contributors.js";
import * as monitoring from "./pages/monitoring.js";
import * as notebooks from "./pages/notebooks.js";
import * as tuningNew from "./pages/tuning_new.js";

const NAV = [
  ["Pipelines", "#/pipelines"], ["Runs", "#/runs"], ["Experiments", "#/experiments"],
  ["Recurring runs", "#/recurringruns"], ["Training jobs", "#/training"], ["Tuning experiments", "#/tuning"],
  ["Models", "#/models"], ["Notebooks", "#/notebooks"], ["Volumes", "#/volumes"], ["Resources", "#/resources"], ["Events", "#/events"], ["Monitoring", "#/monitoring"],
  ["Contributors", "#/contributors"],
];

// Most specific first; ":x" captures one segment, "*rest" the remainder.
const ROUTES = [
  ["/runs/details/:id", pipelines.runDetails], ["/runs/new", pipelines.newRun], ["/runs", pipelines.runs],
  ["/compare", pipelines.compare],
  ["/experiments/details/:id", pipelines.experimentDetails], ["/experiments", pipelines.experiments],
  ["/pipelines/details/:id/version/:vid", pipelines.pipelineDetails], ["/pipelines/details/:id", pipelines.pipelineDetails],
  ["/pipelines/upload", pipelines.upload], ["/pipelines", pipelines.pipelinesList],
  ["/recurringruns/details/:id", pipelines.recurringDetails], ["/recurringruns", pipelines.recurringRuns],
  ["/training/:group/:plural/:ns/:name", training.details], ["/training", training.list],
  ["/tuning/new", tuningNew.newExperiment], ["/tuning/:ns/:name", tuning.details], ["/tuning", tuning.list],
  ["/models/:ns/:name", serving.details], ["/models", serving.list],
  ["/notebooks/new", notebooks.spawner], ["/notebooks", notebooks.list], ["/volumes", notebooks.volumes], ["/contributors", contributors.contributors], ["/monitoring", monitoring.page],
  ["/resources/:group/:plural/:ns/:name", resources.details], ["/resources/:group/:plural", resources.list],
  ["/resources", resources.index], ["/events", resources.events], ["/search", resources.search],
  ["/create", resources.create], ["/", home.home],
];

export const ctx = {
  ns: new Cell(localStorage.getItem("ketch.ns") || "default"),  // the last choice is remembered
  go(hash) { location.hash = hash; },
};

function match(path) {
  for (const [pat, fn] of ROUTES) {
    const ps = pat.split("/").filter(Boolean), xs = path.split("/").filter(Boolean);
    if (ps.length !== xs.length) continue;
    const params = {};
    if (ps.every((p, i) => p.startsWith(":") ? (params[p.slice(1)] = decodeURIComponent(xs[i]), true) : p === xs[i])) return [fn, params];
  }
  return [null, {}];
}

let cleanup = null;
async function route() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = raw.split("?");
  const [fn, params] = match(path);
  const query = new URLSearchParams(qs || "");
  if (cleanup) { try { cleanup(); } catch { /* view already gone */ } cleanup = null; }
  const main = document.getElementById("main");
  document.getElementById("panel").hidden = true;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", path.startsWith(a.getAttribute("href").slice(1)));
  if (!fn) { mount(main, h("h1", {}, "Not found"), h("p", {}, `No page at ${path}`)); return; }
  const root = h("div", { class: "page" });
  mount(main, root);
  try {
    const wg = await workgroup();
    cleanup = (await fn(root, params, { ...ctx, query, admin: !!wg.clusterAdmin })) || null;
  } catch (e) {
    root.appendChild(errorBox(e));
  }
}

// The caller's namespaces and role in each (/ui/namespaces, answered from RBAC), fetched once per page load.
let wgPromise = null;
export function workgroup() {
  if (!wgPromise) wgPromise = get("/ui/namespaces").catch(() => ({ clusterAdmin: true, namespaces: [] }));
  return wgPromise;
}

// In a namespace where the user's role is view, the controls that would write are disabled, with a title
// that says why (the API would refuse them with 403 anyway; a viewer should not be offered them). Pages
// need not know: links to the create pages and the write buttons are found by what they do.
const WRITE_LINKS = ["#/create", "#/runs/new", "#/pipelines/upload", "#/notebooks/new", "#/tuning/new"];
const WRITE_BUTTONS = new Set(["Create", "Start", "Stop", "Delete", "Terminate", "Retry", "Archive", "Restore", "Save (PUT)", "Upload", "Remove", "Pause", "Resume"]);
async function guardWrites(main) {
  const wg = await workgroup();
  const apply = () => {
    const ns = ctx.ns.get();
    const entry = (wg.namespaces || []).find(n => n.name === ns);
    const viewOnly = !wg.clusterAdmin && entry && entry.role === "view";
    const why = `Your role in namespace ${ns} is view: you cannot change anything here.`;
    for (const a of main.querySelectorAll("a[href], a[data-write-href]")) {
      const href = a.getAttribute("href") || a.dataset.writeHref;
      if (!WRITE_LINKS.some(w => href.startsWith(w))) continue;
      if (viewOnly && a.hasAttribute("href")) { a.dataset.writeHref = href; a.removeAttribute("href"); a.setAttribute("aria-disabled", "true"); a.title = why; a.classList.add("disabled"); }
      if (!viewOnly && !a.hasAttribute("href")) { a.setAttribute("href", href); a.removeAttribute("aria-disabled"); a.classList.remove("disabled"); a.title = ""; }
    }
    for (const b of main.querySelectorAll("button")) {
      if (!WRITE_BUTTONS.has(b.textContent.trim()) && b.getAttribute("type") !== "submit") continue;
      if (viewOnly && !b.disabled) { b.disabled = true; b.dataset.viewOnly = "1"; b.title = why; }
      if (!viewOnly && b.dataset.viewOnly) { b.disabled = false; delete b.dataset.viewOnly; b.title = ""; }
    }
  };
  new MutationObserver(apply).observe(main, { childList: true, subtree: true });
  ctx.ns.subscribe(apply);
  apply();
}

async function nsSwitcher() {
  const sel = document.getElementById("ns");
  sel.addEventListener("change", () => { localStorage.setItem("ketch.ns", sel.value); ctx.ns.set(sel.value); });
  const wg = await workgroup();
  if (!wg.clusterAdmin) {
    // Only the namespaces RBAC lets this user see: Profiles owned, contributed to, or bound otherwise.
    const names = wg.namespaces.map(n => n.name);
    if (names.length && !names.includes(ctx.ns.get())) { ctx.ns.set(names[0]); }
    mount(sel, wg.namespaces.map(n => h("option", { value: n.name }, `${n.name} (${n.role})`)));
    sel.value = ctx.ns.get();
    return;
  }
  let current = [];
  const draw = () => {
    const ns = ctx.ns.get();
    const names = current.map(o => o.metadata.name).sort();
    if (ns && ns !== "*" && !names.includes(ns)) names.push(ns);
    mount(sel, h("option", { value: "*" }, "All namespaces"), names.map(n => h("option", { value: n }, n)));
    sel.value = ns;
  };
  liveObjects("/api/v1/namespaces", { onChange(items) { current = items; draw(); } });
  draw();
}

function main() {
  mount(document.getElementById("nav"), NAV.map(([t, href]) => h("a", { href }, t)));
  document.getElementById("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    ctx.go(`#/search?q=${encodeURIComponent(document.getElementById("search").value)}`);
  });
  const live = document.getElementById("live");
  watchState.listeners.add(n => { live.textContent = n ? `● live (${n})` : "○"; live.className = n ? "on" : ""; });
  nsSwitcher();
  guardWrites(document.getElementById("main"));
  ctx.ns.subscribe(() => route());
  window.addEventListener("hashchange", route);
  get("/version").then(v => { document.getElementById("brand").title = v.gitVersion; }).catch(() => {});
  route();
}
main();
