// Tuning: Katib Experiments (kubeflow.org/v1beta1) with progress, the best trial (for NAS, its
// architecture: pages/nas.js), a sortable trials table, the objective over trials and a
// parallel-coordinates plot; all kept live by watches.
import { h, mount, table, badge, age, link, kv, batched } from "../dom.js";
import { findKind, resPath, liveObjects, get, follow } from "../api.js";
import { nsOf, objectPage, inWhere } from "./resources.js";
import { lineChart, parallelCoordinates } from "../charts.js";
import { bestArchitecture, genotypeMetric, genotypeInLog, architectureSummary } from "./nas.js";

// Trial parameters of NAS shown in the architecture panel rather than as values.
const NAS_PARAMS = new Set(["architecture", "nn_config", "search-space", "algorithm-settings"]);
const state = (o) => { const on = ((o.status && o.status.conditions) || []).filter(c => c.status === "True"); return on.length ? on[on.length - 1].type : "Created"; };

export async function list(root, _p, ctx) {
  const k = await findKind("kubeflow.org", "experiments");
  if (!k) { mount(root, h("h1", {}, "Tuning experiments"), h("p", { class: "muted" }, "Katib's Experiment kind is not served by this ketch yet.")); return; }
  const t = table([
    { title: "Name", value: o => o.metadata.name, render: o => link(`#/tuning/${o.metadata.namespace}/${encodeURIComponent(o.metadata.name)}`, o.metadata.name) },
    { title: "Namespace", value: o => o.metadata.namespace },
    { title: "State", value: state, render: o => badge(state(o)) },
    { title: "Progress", value: o => progress(o).done, render: o => progressBar(o) },
    { title: "Best", value: o => bestValue(o) ?? "" },
    { title: "Age", value: o => o.metadata.creationTimestamp, render: o => age(o.metadata.creationTimestamp) },
  ], [], { id: "tuning-experiments", empty: `No experiments ${inWhere(ctx)}.` });
  const w = liveObjects(resPath(k, nsOf(ctx)), { onChange: items => t.setRows(items) });
  mount(root, h("h1", {}, "Tuning experiments"), h("div", { class: "toolbar" }, link("#/tuning/new", "New experiment"), link(`#/create?kind=${encodeURIComponent(k.gv + "/Experiment")}`, "New from YAML")), t);
  return () => w.stop();
}

function progress(o) {
  const st = o.status || {};
  const done = (st.trialsSucceeded || 0) + (st.trialsFailed || 0) + (st.trialsKilled || 0) + (st.trialsEarlyStopped || 0) + (st.trialMetricsUnavailable || 0);
  return { done, total: (o.spec || {}).maxTrialCount || st.trials || 0, running: st.trialsRunning || 0 };
}
function progressBar(o) {
  const p = progress(o);
  const pct = p.total ? Math.min(100, (100 * p.done) / p.total) : 0;
  return h("span", { class: "progress", title: `${p.done}/${p.total} (${p.running} running)` }, h("span", { class: "fill", style: { width: `${pct}%` } }), h("span", { class: "ptext" }, `${p.done}/${p.total}`));
}
function bestValue(o) {
  const best = (o.status || {}).currentOptimalTrial || {};
  const name = ((o.spec || {}).objective || {}).objectiveMetricName;
  const m = (((best.observation || {}).metrics) || []).find(x => x.name === name);
  return m ? m.latest ?? m.max ?? m.min : null;
}

// Long floats shown to 4 significant digits (sorting still uses the full value).
const short = (v) => (typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(4))) : v ?? "");
const num = (v) => (v !== undefined && v !== null && v !== "" && !isNaN(Number(v)) ? Number(v) : v);
function metric(trial, name) {
  const m = ((((trial.status || {}).observation || {}).metrics) || []).find(x => x.name === name);
  return m ? num(m.latest ?? m.max ?? m.min) : undefined;
}

export async function details(root, p, ctx) {
  const ek = await findKind("kubeflow.org", "experiments");
  const tk = await findKind("kubeflow.org", "trials");
  if (!ek) throw new Error("Katib's Experiment kind is not served");
  let exp = null, trials = [];
  const summary = h("div", { id: "tuning-summary" });
  const tbox = h("div", { id: "trials" });
  const plots = h("div", { class: "charts" });
  function draw() {
    if (!exp) return;
    const obj = (exp.spec || {}).objective || {};
    const goal = obj.objectiveMetricName || "objective";
    const pnames = ((exp.spec || {}).parameters || []).map(x => x.name);
    const best = (exp.status || {}).currentOptimalTrial || {};
    const nas = !!(exp.spec || {}).nasConfig;
    const algo = ((exp.spec || {}).algorithm || {}).algorithmName;
    mount(summary, h("p", {}, badge(state(exp)), " ", progressBar(exp), ` · ${obj.type || ""} ${goal}${obj.goal !== undefined ? " to " + obj.goal : ""} · algorithm ${((exp.spec || {}).algorithm || {}).algorithmName || ""}`),
      h("h2", {}, "Best trial"), best.bestTrialName ? h("div", { id: "best-trial" }, h("p", {}, best.bestTrialName),
        kv(Object.fromEntries([...(best.parameterAssignments || []).filter(a => !nas || !NAS_PARAMS.has(a.name)).map(a => [a.name, short(num(a.value))]),
          ...(((best.observation || {}).metrics) || []).filter(m => !/genotype/i.test(m.name)).map(m => [m.name, m.latest ?? m.max])]))) : h("p", { class: "muted" }, "none yet"),
      ...(nas ? [bestArchitecture(exp, best, genotypeOf(best))] : []));
    const rows = trials.slice().sort((a, b) => String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)) || a.metadata.name.localeCompare(b.metadata.name));
    const pv = (t, n) => num(((t.spec || {}).parameterAssignments || []).find(a => a.name === n)?.value);
    const sig = JSON.stringify([pnames, goal, best.bestTrialName, nas]);
    if (tbox.firstChild && tbox.dataset.sig === sig) tbox.firstChild.setRows(rows);
    else mount(tbox, table([
      { title: "Trial", value: t => t.metadata.name, render: t => h("span", { class: t.metadata.name === best.bestTrialName ? "best" : "" }, t.metadata.name) },
      { title: "State", value: state, render: t => badge(state(t)) },
      ...pnames.map(n => ({ title: n, value: t => pv(t, n) ?? "", render: t => short(pv(t, n)), })),
      ...(nas && algo === "enas" ? [{ title: "Architecture", value: t => architectureSummary(t, exp.spec.nasConfig) }] : []),
      { title: goal, value: t => metric(t, goal) ?? "" },
      { title: "", value: () => "", render: t => h("button", { class: "trial-logs", "data-trial": t.metadata.name, onclick: () => openLog(t) }, "Logs") },
    ], rows, { id: "trials-table", empty: "No trials yet." }));
    tbox.dataset.sig = sig;
    const done = rows.filter(t => typeof metric(t, goal) === "number");
    let bestSoFar = null;
    const running = done.map((t, i) => { const v = metric(t, goal); bestSoFar = bestSoFar === null ? v : obj.type === "minimize" ? Math.min(bestSoFar, v) : Math.max(bestSoFar, v); return [i + 1, bestSoFar]; });
    mount(plots,
      h("figure", {}, h("figcaption", {}, `${goal} over trials`), lineChart([{ name: goal, points: done.map((t, i) => [i + 1, metric(t, goal)]) }, { name: "best so far", points: running }], { xLabel: "trial", yLabel: goal, id: "objective-chart", dots: done.length < 300 })),
      pnames.length === 0 ? null : h("figure", {}, h("figcaption", {}, "Parameters against the objective"),
        parallelCoordinates([...pnames.map(name => ({ name })), { name: goal }], done.map(t => ({ label: t.metadata.name, values: Object.fromEntries([...pnames.map(n => [n, pv(t, n)]), [goal, metric(t, goal)]]) })))));
  }
  // NAS: the best trial's genotype (DARTS), from its metrics or else, once per best trial, its log.
  const genotypes = new Map();
  function genotypeOf(best) {
    const name = best.bestTrialName;
    if (!name) return null;
    const trial = trials.find(t => t.metadata.name === name);
    const fromMetric = genotypeMetric(best) || genotypeMetric(trial && trial.status);
    if (fromMetric) return fromMetric;
    if (!genotypes.has(name)) {
      genotypes.set(name, undefined);
      genotypeFromLog(name).then(g => { genotypes.set(name, g); redraw(); }, () => genotypes.set(name, null));
    }
    return genotypes.get(name);
  }
  async function genotypeFromLog(trialName) {
    const nsPods = `/api/v1/namespaces/${encodeURIComponent(p.ns)}/pods`;
    const pods = (await get(`${nsPods}?labelSelector=${encodeURIComponent("katib.kubeflow.org/trial=" + trialName)}`)).items || [];
    if (!pods.length) return null;
    const pod = pods[pods.length - 1];
    const primary = ((exp.spec || {}).trialTemplate || {}).primaryContainerName;
    const res = await fetch(`${nsPods}/${encodeURIComponent(pod.metadata.name)}/log${primary ? "?container=" + encodeURIComponent(primary) : ""}`);
    return res.ok ? genotypeInLog(await res.text()) : null;
  }
  // A trial's log: its primary container's, in the trial's Pod (found by Katib's trial label), followed
  // live while it runs. A finished trial's Job is deleted unless the template says `retain: true`.
  const logTitle = h("h3", { id: "trial-log-title" });
  const logBox = h("pre", { class: "log", id: "trial-log" });
  let logStop = null;
  async function openLog(t) {
    if (logStop) { logStop.stop(); logStop = null; }
    logTitle.textContent = `Log of ${t.metadata.name}`;
    logBox.textContent = "";
    const nsPods = `/api/v1/namespaces/${encodeURIComponent(p.ns)}/pods`;
    let pods = [];
    try { pods = (await get(`${nsPods}?labelSelector=${encodeURIComponent("katib.kubeflow.org/trial=" + t.metadata.name)}`)).items || []; } catch (e) { logBox.textContent = String(e.message || e); return; }
    if (!pods.length) {
      logBox.textContent = "No Pod is left for this trial: Katib deletes a finished trial's run unless the trial template sets retain: true.";
      return;
    }
    pods.sort((a, b) => String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)));
    const pod = pods[pods.length - 1];
    const primary = ((exp.spec || {}).trialTemplate || {}).primaryContainerName;
    const names = ((pod.spec || {}).containers || []).map(c => c.name);
    const container = names.includes(primary) ? primary : names[0];
    logStop = follow(`${nsPods}/${encodeURIComponent(pod.metadata.name)}/log?follow=true&tailLines=500${container ? "&container=" + encodeURIComponent(container) : ""}`,
      (text) => { logBox.textContent += text; logBox.scrollTop = logBox.scrollHeight; });
  }
  const redraw = batched(draw);
  const ew = liveObjects(resPath(ek, p.ns), { query: `fieldSelector=${encodeURIComponent("metadata.name=" + p.name)}`, onChange(items) { exp = items[0] || null; redraw(); } });
  const tw = tk ? liveObjects(resPath(tk, p.ns), { query: `labelSelector=${encodeURIComponent("katib.kubeflow.org/experiment=" + p.name)}`, onChange(items) { trials = items; redraw(); } }) : null;
  const objBox = h("div");
  const stopObj = objectPage(objBox, ek, p.ns, p.name, ctx);
  mount(root, h("h1", {}, `Experiment ${p.name}`), summary, h("h2", {}, "Trials"), plots, tbox, logTitle, logBox, h("details", {}, h("summary", {}, "Object, YAML and events"), objBox));
  return () => { ew.stop(); if (tw) tw.stop(); stopObj(); if (logStop) logStop.stop(); };
}
