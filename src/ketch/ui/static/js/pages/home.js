// Home: what is running now (pipeline runs, training jobs, experiments, notebooks, inference services) in
// the chosen namespace or all of them, recent activity (events), the node's capacity and use, quick links.
// The workload lists are polled one after another rather than watched: a browser keeps at most six
// HTTP/1.1 connections per origin, and a dozen open watches would starve every other request. Events are
// one live watch.
import { h, mount, table, badge, age, link, batched } from "../dom.js";
import { liveObjects, kinds, get, pollLists } from "../api.js";
import { nsOf } from "./resources.js";

const DONE = new Set(["SUCCEEDED", "FAILED", "CANCELED", "SKIPPED", "Succeeded", "Failed", "Complete", "Completed"]);

// kind -> where its objects live, how to read a state, where its page is
const WORKLOADS = [
  { kind: "PipelineRun", group: "pipelines.kubeflow.org", plural: "pipelineruns",
    state: o => (o.status || {}).state || "PENDING", href: o => `#/runs/details/${o.metadata.name}`,
    name: o => (o.spec || {}).displayName || o.metadata.name },
  ...["pytorchjobs", "tfjobs", "xgboostjobs", "jaxjobs", "mpijobs", "paddlejobs"].map(plural => ({
    group: "kubeflow.org", plural, state: conditionState,
    href: o => `#/training/kubeflow.org/${plural}/${o.metadata.namespace}/${o.metadata.name}` })),
  { group: "trainer.kubeflow.org", plural: "trainjobs", state: conditionState,
    href: o => `#/training/trainer.kubeflow.org/trainjobs/${o.metadata.namespace}/${o.metadata.name}` },
  { group: "kubeflow.org", plural: "experiments", state: conditionState, href: o => `#/tuning/${o.metadata.namespace}/${o.metadata.name}` },
  { group: "kubeflow.org", plural: "notebooks", state: o => ((o.status || {}).readyReplicas ? "Ready" : "Starting"),
    href: () => "#/notebooks", stopped: o => "kubeflow-resource-stopped" in (o.metadata.annotations || {}) },
  { group: "serving.kserve.io", plural: "inferenceservices", state: o => readyState(o), href: o => `#/models/${o.metadata.namespace}/${o.metadata.name}` },
  { group: "batch", plural: "jobs", kind: "Job", state: o => (conditionState(o) === "Pending" && (o.status || {}).active ? "Running" : conditionState(o)),
    href: o => `#/resources/batch/jobs/${o.metadata.namespace}/${o.metadata.name}` },
];

function conditionState(o) {
  const cs = (o.status || {}).conditions || [];
  const on = cs.filter(c => c.status === "True");
  return on.length ? on[on.length - 1].type : (cs.length ? cs[cs.length - 1].type : "Pending");
}
function readyState(o) {
  const ready = ((o.status || {}).conditions || []).find(c => c.type === "Ready");
  return ready && ready.status === "True" ? "Ready" : "NotReady";
}

export async function home(root, _p, ctx) {
  const ns = nsOf(ctx);
  const served = await kinds();
  const where = ns ? `namespace ${ns}` : "all namespaces";
  const running = h("div", { id: "home-running" });
  const activity = h("div", { id: "home-activity" });
  const node = h("div", { id: "home-node" });
  const links = [["Upload a pipeline", "#/pipelines/upload"], ["Start a run", "#/runs/new"], ["Notebooks", "#/notebooks"],
    ["Models", "#/models"], ["Create from YAML", "#/create"], ["All resources", "#/resources"]];
  mount(root, h("h1", {}, "ketch"), h("p", { class: "muted" }, `Showing ${where}`),
    h("div", { class: "toolbar quick-links" }, links.map(([t, href]) => link(href, t))),
    h("h2", {}, "Running now"), running, h("div", { class: "home-cols" },
      h("section", {}, h("h2", {}, "Recent activity"), activity), h("section", {}, h("h2", {}, "This machine"), node)));

  const rows = new Map();  // plural -> objects
  const watches = [];
  const draw = batched(() => {
    const live = [];
    for (const w of WORKLOADS) {
      for (const o of rows.get(w.plural) || []) {
        const st = w.state(o);
        if (DONE.has(st) || (w.stopped && w.stopped(o))) continue;
        live.push({ w, o, st });
      }
    }
    live.sort((a, b) => (b.o.metadata.creationTimestamp || "").localeCompare(a.o.metadata.creationTimestamp || ""));
    mount(running, table([
      { title: "Kind", value: r => r.o.kind || r.w.kind },
      { title: "Name", value: r => (r.w.name ? r.w.name(r.o) : r.o.metadata.name), render: r => link(r.w.href(r.o), r.w.name ? r.w.name(r.o) : r.o.metadata.name) },
      { title: "Namespace", value: r => r.o.metadata.namespace || "" },
      { title: "State", value: r => r.st, render: r => badge(r.st) },
      { title: "Age", value: r => r.o.metadata.creationTimestamp || "", render: r => age(r.o.metadata.creationTimestamp) },
    ], live, { id: "running-table", empty: `Nothing is running in ${where}.` }));
  });
  const paths = [];
  for (const w of WORKLOADS) {
    const k = served.find(x => x.group === w.group && x.plural === w.plural);
    if (k) paths.push([w.plural, `/apis/${w.group}/${k.version}${ns ? `/namespaces/${ns}` : ""}/${w.plural}`]);
  }
  const poller = pollLists(paths, { onChange(plural, items) { rows.set(plural, items); }, onRound: draw });

  const evPath = `/api/v1${ns ? `/namespaces/${ns}` : ""}/events`;
  let events = [];
  const drawEvents = batched(() => {
    const recent = events.slice().sort((a, b) => stamp(b).localeCompare(stamp(a))).slice(0, 12);
    mount(activity, table([
      { title: "When", render: e => age(stamp(e)) },
      { title: "Type", render: e => (e.type === "Warning" ? h("span", { class: "warn" }, e.type) : e.type || "") },
      { title: "Object", value: e => `${(e.involvedObject || {}).kind || ""}/${(e.involvedObject || {}).name || ""}` },
      { title: "Reason", value: e => e.reason || "" },
      { title: "Message", value: e => e.message || "" },
    ], recent, { id: "activity-table", sortable: false, empty: `No events in ${where} yet.` }));
  });
  watches.push(liveObjects(evPath, { onChange(items) { events = items; drawEvents(); } }));
  drawEvents();

  let timer = null, stopped = false;
  const usage = async () => {
    try {
      const nodes = (await get("/api/v1/nodes")).items || [];
      let metrics = {};
      try {
        for (const m of (await get("/apis/metrics.k8s.io/v1beta1/nodes")).items || []) metrics[m.metadata.name] = m.usage || {};
      } catch { metrics = {}; }  // metrics.k8s.io not served here
      const alloc = n => (n.status || {}).allocatable || {};
      const use = n => metrics[n.metadata.name] || {};
      const ready = n => (((n.status || {}).conditions || []).find(c => c.type === "Ready") || {}).status === "True";
      mount(node, table([
        { title: "Node", value: n => n.metadata.name },
        { title: "CPU", value: n => (use(n).cpu ? `${use(n).cpu} of ${alloc(n).cpu} used` : `${alloc(n).cpu || "?"} cores`) },
        { title: "Memory", value: n => (use(n).memory ? `${bytes(use(n).memory)} of ${bytes(alloc(n).memory)} used` : bytes(alloc(n).memory)) },
        { title: "GPUs", value: n => alloc(n)["nvidia.com/gpu"] || "0" },
        { title: "Ready", render: n => badge(ready(n) ? "Ready" : "NotReady") },
      ], nodes, { id: "node-table", sortable: false, empty: "No node registered (the kubelet is disabled)." }));
    } catch (e) { mount(node, h("p", { class: "muted" }, String(e.message || e))); }
    if (!stopped) timer = setTimeout(usage, 10000);
  };
  usage();
  return () => { stopped = true; poller.stop(); for (const w of watches) w.stop(); clearTimeout(timer); };
}

// "24683584Ki" -> "23.5 GiB"; CPU "1500m" stays as it is.
function bytes(q) {
  const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q || ""));
  if (!m) return q || "?";
  const mult = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2]] || 1;
  return `${(Number(m[1]) * mult / 1024 ** 3).toFixed(1)} GiB`;
}

const stamp = (e) => e.lastTimestamp || e.eventTime || (e.metadata || {}).creationTimestamp || "";
