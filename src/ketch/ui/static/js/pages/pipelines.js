// KFP pages over the v2beta1 REST API: pipelines, runs (list, DAG, task panel with log and artifacts,
// compare, create), experiments and recurring runs. KFP's REST API has no watch; the pages follow ketch's
// PipelineRun objects with a Kubernetes watch instead and re-read the REST view when one changes.
import { h, mount, clear, table, errorBox, badge, age, duration, link, kv } from "../dom.js";
import { get, req, kfp, follow, findKind, resPath, listWatch } from "../api.js";
import { dagSvg } from "../dag.js";
import { lineChart, confusionMatrix, rocCurve, rocOverlay, groupedBarChart } from "../charts.js";
import { nsOf } from "./resources.js";

const TERMINAL = new Set(["SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "ERROR"]);
// KFP standalone is single-user: its objects are not filtered by the namespace switcher.
// KFP's lists as its UI asks for them: a cluster admin sees every namespace's (single-user KFP); anyone
// else lists the chosen namespace, as KFP's multi-user mode requires (the API refuses a list across
// namespaces to a user without rights there).
const nsq = (ctx) => (ctx && !ctx.admin && ctx.ns.get() && ctx.ns.get() !== "*" ? `namespace=${encodeURIComponent(ctx.ns.get())}` : "");
const q = (...parts) => parts.filter(Boolean).join("&");

function unavailable(root, title, e) {
  mount(root, h("h1", {}, title), errorBox(e.status === 404 ? "The KFP API (/apis/v2beta1) is not served by this ketch yet." : e));
}

// ketch's KFP runs are PipelineRun objects: when that kind is served, a page re-reads the REST view only
// when a watch says the run changed (one call in flight at a time, the last change always read);
// otherwise it falls back to re-reading every few seconds while visible. Returns a stopper.
function follower(fn, name, ms, keep) {
  let busy = false, again = false, stopped = false, w = null, stopPoll = null;
  const run = async () => {
    if (stopped) return;
    if (busy) { again = true; return; }
    busy = true;
    try { await fn(); } catch { /* shown by fn */ }
    busy = false;
    if (again) { again = false; run(); }
  };
  findKind("pipelines.kubeflow.org", "pipelineruns").then(k => {
    if (stopped) return;
    if (!k) { stopPoll = refresher(fn, ms, keep); return; }
    w = listWatch(resPath(k, ""), { query: name ? `fieldSelector=${encodeURIComponent("metadata.name=" + name)}` : "", onList: () => {}, onEvent: run });
  });
  return () => { stopped = true; if (w) w.stop(); if (stopPoll) stopPoll(); };
}

// Re-run fn every ms while the tab is visible and keep() says so; returns a stopper.
function refresher(fn, ms, keep = () => true) {
  let timer = null, stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (document.visibilityState === "visible") { try { await fn(); } catch { /* shown by fn */ } }
    if (!stopped && keep()) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}

// ---------------------------------------------------------------- pipelines
export async function pipelinesList(root, _p, ctx) {
  let data;
  try { data = await get(kfp(`/pipelines?${q("page_size=200", "sort_by=created_at%20desc")}`)); } catch (e) { return unavailable(root, "Pipelines", e); }
  mount(root, h("h1", {}, "Pipelines"), h("div", { class: "toolbar" }, link("#/pipelines/upload", "Upload pipeline")),
    table([
      { title: "Name", value: p => p.display_name, render: p => link(`#/pipelines/details/${p.pipeline_id}`, p.display_name || p.name || p.pipeline_id) },
      { title: "Description", value: p => p.description || "" },
      { title: "Created", value: p => p.created_at, render: p => age(p.created_at) + " ago" },
    ], data.pipelines || [], { id: "pipelines" }));
}

export function specOf(x) {
  let sp = x && x.pipeline_spec;
  if (sp && sp.pipeline_spec) sp = sp.pipeline_spec;
  return sp || null;
}

// Tasks and, as KFP's UI draws them, their output artifacts: task -> artifact -> consuming task. A
// task-to-task edge stays only where no artifact already links the two. Artifact node ids are
// "producer/outputKey" (a task id never holds a slash: KFP's compiler makes them DNS-like).
export function graphOf(spec, { artifacts = true } = {}) {
  const tasks = (spec && spec.root && spec.root.dag && spec.root.dag.tasks) || {};
  const comps = (spec && spec.components) || {};
  const nodes = Object.entries(tasks).map(([id, t]) => ({ id, label: (t.taskInfo && t.taskInfo.name) || id }));
  const edges = [], linked = new Set();
  if (artifacts) {
    const arts = new Map();
    for (const [id, t] of Object.entries(tasks)) {
      const c = comps[(t.componentRef || {}).name] || {};
      for (const [k, d] of Object.entries(((c.outputDefinitions || {}).artifacts) || {})) {
        const aid = `${id}/${k}`;
        arts.set(aid, { id: aid, kind: "artifact", label: k, task: id, output: k, type: ((d.artifactType || {}).schemaTitle) || "system.Artifact" });
        edges.push([id, aid]);
      }
    }
    for (const [id, t] of Object.entries(tasks)) {
      for (const v of Object.values(((t.inputs || {}).artifacts) || {})) {
        const o = v.taskOutputArtifact;
        if (!o) continue;
        const aid = `${o.producerTask}/${o.outputArtifactKey}`;
        if (!arts.has(aid)) continue;
        edges.push([aid, id]);
        linked.add(`${o.producerTask}\n${id}`);
      }
    }
    nodes.push(...arts.values());
  }
  for (const [id, t] of Object.entries(tasks)) for (const d of t.dependentTasks || []) if (!linked.has(`${d}\n${id}`)) edges.push([d, id]);
  return { nodes, edges };
}

export async function pipelineDetails(root, p) {
  let pl, versions;
  try {
    [pl, versions] = await Promise.all([get(kfp(`/pipelines/${p.id}`)), get(kfp(`/pipelines/${p.id}/versions?page_size=100&sort_by=created_at%20desc`))]);
  } catch (e) { return unavailable(root, "Pipeline", e); }
  const vs = versions.pipeline_versions || [];
  const vid = p.vid || (vs[0] && vs[0].pipeline_version_id);
  const graph = h("div", { class: "dag-wrap" });
  mount(root, h("h1", {}, pl.display_name || pl.name), h("p", { class: "muted" }, pl.description || ""),
    h("div", { class: "toolbar" }, link(`#/runs/new?pipeline=${p.id}${vid ? "&version=" + vid : ""}`, "Create run")),
    h("h2", {}, "Versions"), table([
      { title: "Version", value: v => v.display_name, render: v => link(`#/pipelines/details/${p.id}/version/${v.pipeline_version_id}`, v.display_name || v.pipeline_version_id) },
      { title: "Created", value: v => v.created_at, render: v => age(v.created_at) + " ago" },
    ], vs, { id: "versions" }), h("h2", {}, "Graph"), graph);
  if (vid) {
    const v = await get(kfp(`/pipelines/${p.id}/versions/${vid}`));
    const g = graphOf(specOf(v));
    mount(graph, dagSvg(g.nodes, g.edges));
  }
}

export async function upload(root, _p, ctx) {
  const file = h("input", { type: "file", id: "upload-file", accept: ".yaml,.yml,.json,.py" });
  const name = h("input", { id: "upload-name", placeholder: "pipeline name (defaults to file name)" });
  const desc = h("input", { id: "upload-desc", placeholder: "description" });
  const out = h("div", { id: "upload-result" });
  async function go(ev) {
    ev.preventDefault();
    clear(out);
    const f = file.files[0];
    if (!f) { out.appendChild(errorBox("Choose a compiled pipeline (.yaml) or a pipeline .py file")); return; }
    const fd = new FormData();
    fd.append("uploadfile", f, f.name);
    const qs = q(`name=${encodeURIComponent(name.value || f.name.replace(/\.(ya?ml|json|py)$/, ""))}`, desc.value && `description=${encodeURIComponent(desc.value)}`, nsq(ctx));
    try {
      const pl = await req("POST", kfp(`/pipelines/upload?${qs}`), fd);
      location.hash = `#/pipelines/details/${pl.pipeline_id}`;
    } catch (e) { out.appendChild(errorBox(e)); }
  }
  mount(root, h("h1", {}, "Upload pipeline"),
    h("form", { class: "form", onsubmit: go }, h("label", {}, "File ", file), h("label", {}, "Name ", name), h("label", {}, "Description ", desc),
      h("button", { type: "submit", id: "upload-submit" }, "Upload")), out);
}

// ---------------------------------------------------------------- runs
export async function runs(root, _p, ctx) {
  const state = h("select", { id: "run-state" }, ["", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"].map(s => h("option", { value: s }, s || "any state")));
  const text = h("input", { type: "search", id: "run-filter", placeholder: "Filter by name" });
  const archived = h("input", { type: "checkbox", id: "run-archived" });
  const selected = new Set();
  const tbox = h("div");
  let all = [], exps = new Map();
  const compareBtn = h("button", { id: "compare", onclick: () => { location.hash = `#/compare?runs=${[...selected].join(",")}`; } }, "Compare selected");
  const act = (verb) => async () => { for (const id of selected) { try { await req(verb === "delete" ? "DELETE" : "POST", kfp(`/runs/${id}${verb === "delete" ? "" : ":" + verb}`)); } catch (e) { tbox.prepend(errorBox(e)); } } await load(); };
  async function load() {
    const data = await get(kfp(`/runs?${q(nsq(ctx), "page_size=200", "sort_by=created_at%20desc")}`));
    all = data.runs || [];
    const need = [...new Set(all.map(r => r.experiment_id).filter(id => id && !exps.has(id)))];
    await Promise.all(need.map(async id => { try { exps.set(id, await get(kfp(`/experiments/${id}`))); } catch { exps.set(id, null); } }));
    draw();
  }
  function draw() {
    const f = text.value.toLowerCase();
    const rs = all.filter(r => (!state.value || r.state === state.value) && (!f || (r.display_name || "").toLowerCase().includes(f))
      && ((r.storage_state === "ARCHIVED") === archived.checked));
    mount(tbox, table([
      { title: "", render: r => h("input", { type: "checkbox", class: "pick", checked: selected.has(r.run_id), onclick: (e) => { e.stopPropagation(); e.target.checked ? selected.add(r.run_id) : selected.delete(r.run_id); } }) },
      { title: "Run", value: r => r.display_name, render: r => link(`#/runs/details/${r.run_id}`, r.display_name || r.run_id) },
      { title: "State", value: r => r.state, render: r => badge(r.state) },
      { title: "Duration", value: r => (new Date(r.finished_at || Date.now()) - new Date(r.created_at)), render: r => duration(r.created_at, r.finished_at) },
      { title: "Experiment", value: r => (exps.get(r.experiment_id) || {}).display_name || "", render: r => r.experiment_id ? link(`#/experiments/details/${r.experiment_id}`, (exps.get(r.experiment_id) || {}).display_name || r.experiment_id) : "" },
      { title: "Created", value: r => r.created_at, render: r => age(r.created_at) + " ago" },
    ], rs, { id: "runs", empty: "No runs." }));
  }
  for (const el of [state, text, archived]) el.addEventListener("input", draw);
  try { await load(); } catch (e) { return unavailable(root, "Runs", e); }
  mount(root, h("h1", {}, "Runs"),
    h("div", { class: "toolbar" }, link("#/runs/new", "Create run"), state, text, h("label", {}, archived, " archived"), compareBtn,
      h("button", { onclick: act("terminate") }, "Terminate"), h("button", { onclick: act("retry") }, "Retry"),
      h("button", { onclick: act("archive") }, "Archive"), h("button", { onclick: act("unarchive") }, "Restore"), h("button", { onclick: act("delete") }, "Delete")),
    tbox);
  return follower(load, "", 5000, () => true);
}

async function specForRun(run) {
  const sp = specOf(run);
  if (sp) return sp;
  const ref = run.pipeline_version_reference;
  if (ref && ref.pipeline_id && ref.pipeline_version_id) {
    try { return specOf(await get(kfp(`/pipelines/${ref.pipeline_id}/versions/${ref.pipeline_version_id}`))); } catch { return null; }
  }
  return null;
}

// Task details by the root DAG's task name: ketch's task details carry it as task_name (KFP's only as
// display_name); a task directly under the root DAG wins over a same-named one nested deeper, and the
// newest attempt wins among equals.
function taskIndex(run) {
  const m = new Map();
  const all = ((run.run_details || {}).task_details) || [];
  const root = all.find(t => !t.parent_task_id && (t.kind === "dag" || all.length > 1 && all.some(c => c.parent_task_id === t.task_id)));
  const rank = (t) => ((root ? t.parent_task_id === root.task_id : !t.parent_task_id) ? 2 : 1);
  for (const t of all) {
    if (root && t === root) continue;
    const k = t.task_name || t.display_name || t.task_id;
    const prev = m.get(k);
    if (!prev || rank(t) > rank(prev) || (rank(t) === rank(prev) && String(t.create_time || "") >= String(prev.create_time || ""))) m.set(k, t);
  }
  return m;
}

export async function runDetails(root, p, ctx) {
  let run;
  try { run = await get(kfp(`/runs/${p.id}`)); } catch (e) { return unavailable(root, "Run", e); }
  const spec = await specForRun(run);
  const head = h("div"), graph = h("div", { class: "dag-wrap" }), panel = h("div", { class: "task-panel", id: "task-panel" });
  let selected = null, panelStop = null;
  const nodesFor = () => {
    const idx = taskIndex(run);
    let g = graphOf(spec);
    if (!g.nodes.length) g = { nodes: [...idx.keys()].map(id => ({ id, label: id })), edges: [] };
    for (const n of g.nodes) if (n.kind !== "artifact") n.state = (idx.get(n.id) || idx.get(n.label) || {}).state || (TERMINAL.has(run.state) ? "SKIPPED" : "PENDING");
    return { g, idx };
  };
  function draw() {
    const params = (run.runtime_config || {}).parameters || {};
    mount(head, h("h1", {}, run.display_name || run.run_id),
      h("p", {}, badge(run.state), ` · started ${age(run.created_at)} ago · duration ${duration(run.created_at, run.finished_at)}`,
        run.experiment_id ? [" · ", link(`#/experiments/details/${run.experiment_id}`, "experiment")] : null),
      run.error ? errorBox(run.error.message || JSON.stringify(run.error)) : null,
      h("div", { class: "toolbar" },
        // actions only where they apply: a finished run cannot be terminated, only a failed one retried
        h("button", { id: "run-terminate", disabled: TERMINAL.has(run.state), onclick: () => req("POST", kfp(`/runs/${run.run_id}:terminate`)).then(reload) }, "Terminate"),
        // KFP's API has no pause call: the PipelineRun's spec.suspend is the switch (as `ketch pause` sets it)
        TERMINAL.has(run.state) ? null : h("button", {
          id: "run-pause", onclick: () => req("PATCH", `/apis/pipelines.kubeflow.org/v1/namespaces/${run.namespace || "kubeflow"}/pipelineruns/${run.run_id}`,
            { spec: { suspend: run.state === "PAUSED" ? null : true } }, { "Content-Type": "application/merge-patch+json" }).then(reload),
        }, run.state === "PAUSED" ? "Resume" : "Pause"),
        h("button", { id: "run-retry", disabled: !["FAILED", "CANCELED"].includes(run.state), onclick: () => req("POST", kfp(`/runs/${run.run_id}:retry`)).then(reload) }, "Retry"),
        h("button", { onclick: () => req("POST", kfp(`/runs/${run.run_id}:archive`)).then(reload) }, "Archive"),
        link(`#/runs/new?clone=${run.run_id}`, "Clone")),
      h("details", {}, h("summary", {}, "Parameters"), kv(params)));
    const { g } = nodesFor();
    mount(graph, dagSvg(g.nodes, g.edges, { selected, onSelect: (id, n) => { selected = id; draw(); if (n && n.kind === "artifact") openArtifact(n); else openTask(id); } }));
  }
  function openArtifact(n) {
    if (panelStop) { panelStop(); panelStop = null; }
    panel.dataset.state = "";
    panel.dataset.pod = "";
    panelStop = artifactPanel(panel, n, taskIndex(run).get(n.task), run);
  }
  function openTask(id) {
    if (panelStop) panelStop();
    const { idx } = nodesFor();
    const t = idx.get(id) || null;
    panelStop = taskPanel(panel, id, t, run, spec, ctx);
  }
  async function reload() { run = await get(kfp(`/runs/${p.id}`)); draw(); if (selected && !selected.includes("/")) { const t = taskIndex(run).get(selected); if (t && (panel.dataset.state !== t.state || panel.dataset.pod !== (t.pod_name || ""))) openTask(selected); } }
  draw();
  mount(root, head, h("div", { class: "run-body" }, graph, panel));
  const stop = follower(reload, p.id, 2000, () => !TERMINAL.has(run.state));
  return () => { stop(); if (panelStop) panelStop(); };
}

function taskPanel(panel, id, t, run, spec, ctx) {
  panel.dataset.state = t ? t.state : "";
  panel.dataset.pod = (t && t.pod_name) || "";
  const logs = h("pre", { class: "log", id: "task-log" });
  const arts = h("div", { class: "artifacts", id: "task-artifacts" });
  let stopLog = null;
  const comp = spec && spec.root && spec.root.dag && spec.root.dag.tasks && spec.root.dag.tasks[id];
  const params = {};
  const actual = (t && t.parameters) || {};
  for (const [k, v] of Object.entries(((comp || {}).inputs || {}).parameters || {})) {
    if (actual.inputs && k in actual.inputs) continue;
    params[k] = v.runtimeValue ? JSON.stringify((v.runtimeValue.constant ?? v.runtimeValue)) : v.componentInputParameter ? `{{pipeline ${v.componentInputParameter}}}` : v.taskOutputParameter ? `{{${v.taskOutputParameter.producerTask}.${v.taskOutputParameter.outputParameterKey}}}` : JSON.stringify(v);
  }
  mount(panel, h("h2", {}, id), t ? h("p", {}, badge(t.state), ` · ${duration(t.start_time || t.create_time, t.end_time)}`) : h("p", { class: "muted" }, "Not started."),
    t && t.error ? errorBox(t.error.message || JSON.stringify(t.error)) : null,
    h("h3", {}, "Inputs"), h("div", { id: "task-inputs" }, kv({ ...params, ...(actual.inputs || {}), ...ioSummary(t && t.inputs) })),
    h("h3", {}, "Outputs"), h("div", { id: "task-outputs" }, kv({ ...(actual.outputs || {}), ...ioSummary(t && t.outputs) })),
    h("h3", {}, "Pod"), h("p", { id: "task-pod" }, (t && t.pod_name) || "—"),
    h("h3", {}, "Artifacts"), arts,
    h("h3", {}, "Log"), logs);
  if (t && t.pod_name) {
    (async () => {
      const ns = await podNamespace(t.pod_name, ctx, run);
      stopLog = follow(`/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(t.pod_name)}/log?follow=true&tailLines=500`,
        (txt) => { logs.textContent += txt; if (logs.textContent.length > 200000) logs.textContent = logs.textContent.slice(-150000); logs.scrollTop = logs.scrollHeight; });
    })();
  }
  // ketch's task details embed the output artifacts (uri, type, metadata); otherwise fetch them by id.
  const embedded = Object.entries(((t && t.artifacts) || {}).outputs || {}).flatMap(([n, v]) => (v || []).map(a => normArtifact(a, n, run)));
  const ids = embedded.length ? [] : Object.values((t && t.outputs) || {}).flatMap(o => o.artifact_ids || []);
  (async () => {
    for (const a of embedded) { try { arts.appendChild(await renderArtifact(a)); } catch (e) { arts.appendChild(errorBox(e)); } }
    for (const aid of ids) {
      try { arts.appendChild(await renderArtifact(normArtifact(await get(kfp(`/artifacts/${encodeURIComponent(aid)}`)), "", run))); } catch (e) { arts.appendChild(errorBox(`artifact ${aid}: ${e.message}`)); }
    }
    if (!embedded.length && !ids.length) arts.appendChild(h("p", { class: "muted" }, "none"));
  })();
  return () => { if (stopLog) stopLog.stop(); };
}

// An artifact node's preview: the producing task's output artifact under that key, drawn by the same
// renderer as the task panel's Artifacts list; before the task has produced it, what it will be.
function artifactPanel(panel, n, t, run) {
  const body = h("div", { class: "artifacts", id: "artifact-preview", "data-artifact": n.id });
  mount(panel, h("h2", {}, n.label), h("p", { class: "muted" }, `${n.type} · output of `, h("b", {}, n.task)), body);
  let stopped = false;
  (async () => {
    const emb = (((t && t.artifacts) || {}).outputs || {})[n.output] || [];
    let arts = emb.map(a => normArtifact(a, n.output, run));
    if (!arts.length) {
      const ids = (((t && t.outputs) || {})[n.output] || {}).artifact_ids || [];
      arts = await Promise.all(ids.map(async aid => normArtifact(await get(kfp(`/artifacts/${encodeURIComponent(aid)}`)), n.output, run)));
    }
    if (stopped) return;
    if (!arts.length) { body.appendChild(h("p", { class: "muted" }, t ? `Not produced (task ${String(t.state || "").toLowerCase()}).` : "Not produced yet.")); return; }
    for (const a of arts) { try { body.appendChild(await renderArtifact(a)); } catch (e) { body.appendChild(errorBox(e)); } }
  })().catch(e => body.appendChild(errorBox(e)));
  return () => { stopped = true; };
}

// One artifact shape for the renderers, from ketch's embedded records ({id, name, uri, type: {schemaTitle},
// metadata}), its lineage answer ({artifact, produced_by, consumed_by}) or KFP's artifact JSON.
export function normArtifact(a, outputName, run) {
  const x = a.artifact || a;
  const type = typeof x.type === "object" && x.type ? x.type.schemaTitle : x.type;
  return { ...x, artifact_id: x.artifact_id || x.id, name: x.name || outputName, type: type || x.schema_title || "system.Artifact",
    run_id: (run && run.run_id) || x.run_id, lineage: a.artifact ? a : null };
}

function ioSummary(io) {
  const out = {};
  for (const [k, v] of Object.entries(io || {})) out[k] = v && v.artifact_ids ? `artifact ${k}${v.artifact_ids.length > 1 ? ` (${v.artifact_ids.length})` : ""} (under Artifacts)` : v && v.parameter_value !== undefined ? v.parameter_value : v;
  return out;
}

async function podNamespace(pod, ctx, run) {
  try {
    const lst = await get(`/api/v1/pods?fieldSelector=${encodeURIComponent("metadata.name=" + pod)}`);
    if (lst.items && lst.items[0]) return lst.items[0].metadata.namespace;
  } catch { /* fall back to the selected namespace */ }
  return nsOf(ctx) || "default";
}

// Artifacts by type: Metrics table, ClassificationMetrics (confusion matrix + ROC), HTML/Markdown in a
// sandboxed iframe (srcdoc, no scripts), Dataset preview, anything else as its metadata and URI.
export async function renderArtifact(a) {
  const type = String(a.type || a.schema_title || a.artifact_type || (a.type_info || {}).schema_title || "system.Artifact");
  const md = a.metadata || a.custom_properties || {};
  const title = h("h4", {}, `${a.name || a.display_name || a.artifact_id} `, h("span", { class: "muted" }, type));
  const box = h("div", { class: "artifact", "data-type": type }, title);
  const content = async () => {
    const url = a.run_id ? `/ui/artifacts/${encodeURIComponent(a.run_id)}/${encodeURIComponent(a.artifact_id)}` : a.download_url;
    if (!url) throw new Error("no content to show");
    if (/^https?:/.test(url) && new URL(url).host !== location.host) throw new Error("artifact is stored off this host");
    const r = await fetch(url);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.text();
  };
  if (/Metrics$/.test(type) && !/Classification|Sliced/.test(type)) {
    box.appendChild(table([{ title: "Metric", value: r => r[0] }, { title: "Value", value: r => r[1] }], Object.entries(md).filter(([k]) => k !== "display_name"), { id: "metrics-table" }));
  } else if (/ClassificationMetrics/.test(type)) {
    if (md.confusionMatrix) box.appendChild(confusionMatrix(md.confusionMatrix));
    if (md.confidenceMetrics) box.appendChild(rocCurve(md.confidenceMetrics));
  } else if (/HTML|Markdown/.test(type)) {
    try {
      const text = await content();
      box.appendChild(sandboxed(/HTML/.test(type) ? text : markdownToHtml(text)));
    } catch (e) { box.appendChild(errorBox(e)); }
  } else if (/Dataset/.test(type)) {
    try {
      const lines = (await content()).split("\n").slice(0, 21).filter(Boolean);
      const rows = lines.map(l => l.split(l.includes("\t") ? "\t" : ","));
      box.appendChild(h("table", { class: "grid preview dataset-preview" }, h("tbody", {}, rows.map((r, i) => h("tr", {}, r.map(c => h(i ? "td" : "th", {}, c)))))));
    } catch (e) { box.appendChild(h("p", { class: "muted" }, `no preview: ${e.message}`)); }
  }
  box.appendChild(kv({ uri: a.uri || a.storage_path || "", ...(Object.keys(md).length && !/Metrics/.test(type) ? { metadata: md } : {}) }));
  if (a.artifact_id) box.appendChild(lineageView(a.artifact_id));
  return box;
}

// An HTML artifact in an iframe with an empty sandbox: no scripts, no forms, no same-origin access, and the
// page's CSP still applies (srcdoc frames inherit it), so nothing in it can reach another host.
// The artifact's own document carries a policy that allows nothing but inline styles and data: images,
// so it cannot reach any host even where a browser does not pass the page's policy on to srcdoc frames.
const ARTIFACT_CSP = `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`;
// Attributes through which a document fetches something by itself (links followed by a click are not).
const FETCHING = ["src", "srcset", "href", "poster", "background", "data", "action", "formaction", "ping"];

// The artifact's HTML with every non-data: resource reference removed, parsed inertly (a DOMParser document
// loads nothing). The CSPs already forbid such loads; this makes "nothing leaves the host" not depend on
// the browser applying them before its preload scanner sees the markup.
function inert(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  for (const el of doc.querySelectorAll(FETCHING.map(a => `[${a}]`).join(","))) {
    for (const a of FETCHING) {
      const v = el.getAttribute(a);
      if (v === null || (a === "href" && /^(a|area)$/i.test(el.tagName))) continue;
      if (!/^\s*(data:|#)/i.test(v)) el.removeAttribute(a);
    }
  }
  doc.head.insertAdjacentHTML("afterbegin", ARTIFACT_CSP);  // the policy first, before anything it governs
  return "<!doctype html>" + doc.documentElement.outerHTML;
}

export function sandboxed(html) {
  return h("iframe", { sandbox: "", class: "sandboxed", title: "artifact", referrerpolicy: "no-referrer", srcdoc: inert(html) });
}

// Which executions produced and consumed an artifact (ketch's /artifacts/{id} answers with its lineage).
function lineageView(aid) {
  const body = h("div", { class: "lineage" });
  const d = h("details", { class: "lineage-box" }, h("summary", {}, "Lineage"), body);
  d.addEventListener("toggle", async () => {
    if (!d.open || body.firstChild) return;
    try {
      const l = await get(kfp(`/artifacts/${encodeURIComponent(aid)}`));
      const row = (e) => h("li", {}, link(`#/runs/details/${e.run_id}`, e.run_id.slice(0, 8)), ` / ${e.display_name || e.task_name || e.task_id} `, badge(e.state));
      mount(body, h("p", {}, "Produced by"), h("ul", { class: "produced" }, (l.produced_by || []).map(row)),
        h("p", {}, "Consumed by"), (l.consumed_by || []).length ? h("ul", { class: "consumed" }, l.consumed_by.map(row)) : h("p", { class: "muted" }, "no consumer"));
    } catch (e) { mount(body, errorBox(e)); }
  });
  return d;
}

// Markdown to HTML for a sandboxed iframe; every piece of text is escaped first.
const esc = (t) => t.replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
export function markdownToHtml(md) {
  const out = [];
  let inCode = false, list = false;
  const inline = (t) => esc(t).replace(/`([^`]+)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>").replace(/\*([^*]+)\*/g, "<i>$1</i>");
  for (const line of md.split("\n")) {
    if (line.startsWith("```")) { out.push(inCode ? "</pre>" : "<pre>"); inCode = !inCode; continue; }
    if (inCode) { out.push(esc(line)); continue; }
    const hm = line.match(/^(#{1,6})\s+(.*)/);
    const li = line.match(/^\s*[-*]\s+(.*)/);
    if (list && !li) { out.push("</ul>"); list = false; }
    if (hm) out.push(`<h${hm[1].length}>${inline(hm[2])}</h${hm[1].length}>`);
    else if (li) { if (!list) { out.push("<ul>"); list = true; } out.push(`<li>${inline(li[1])}</li>`); }
    else if (line.trim()) out.push(`<p>${inline(line)}</p>`);
  }
  if (list) out.push("</ul>");
  if (inCode) out.push("</pre>");
  return out.join("\n");
}

// A run's scalar metrics ("task.metric": number) and its ClassificationMetrics artifacts, from the
// artifacts ketch embeds in task details, else fetched by id.
async function runMetrics(run) {
  const metrics = {}, classification = [];
  const take = (task, a) => {
    const type = String(a.type);
    if (/ClassificationMetrics/.test(type)) classification.push({ task, name: a.name, metadata: a.metadata || {} });
    else if (/Metrics$/.test(type) && !/Sliced/.test(type)) for (const [k, v] of Object.entries(a.metadata || {})) if (typeof v === "number") metrics[`${task}.${k}`] = v;
  };
  for (const t of ((run.run_details || {}).task_details) || []) {
    const task = t.task_name || t.display_name;
    const emb = Object.entries(((t.artifacts || {}).outputs) || {}).flatMap(([n, v]) => (v || []).map(a => normArtifact(a, n, run)));
    for (const a of emb) take(task, a);
    if (emb.length) continue;
    for (const [n, o] of Object.entries(t.outputs || {})) {
      for (const aid of o.artifact_ids || []) {
        try { take(task, normArtifact(await get(kfp(`/artifacts/${encodeURIComponent(aid)}`)), n, run)); } catch { /* artifact gone */ }
      }
    }
  }
  return { metrics, classification };
}

export async function compare(root, _p, ctx) {
  const ids = (ctx.query.get("runs") || "").split(",").filter(Boolean);
  if (ids.length < 2) { mount(root, h("h1", {}, "Compare runs"), errorBox("Select two or more runs on the Runs page.")); return; }
  const rs = await Promise.all(ids.map(id => get(kfp(`/runs/${id}`))));
  const got = await Promise.all(rs.map(runMetrics));
  const ms = got.map(g => g.metrics);
  const names = rs.map(r => r.display_name || r.run_id);
  const pkeys = [...new Set(rs.flatMap(r => Object.keys((r.runtime_config || {}).parameters || {})))].sort();
  const mkeys = [...new Set(ms.flatMap(m => Object.keys(m)))].sort();
  const side = (keys, get1) => h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), rs.map(r => h("th", {}, link(`#/runs/details/${r.run_id}`, r.display_name || r.run_id))))),
    h("tbody", {}, keys.map(k => { const vals = rs.map((r, i) => get1(r, i, k)); const differs = new Set(vals.map(v => JSON.stringify(v))).size > 1;
      return h("tr", { class: differs ? "differs" : "", title: differs ? "values differ" : "" }, h("th", {}, k), vals.map(v => h("td", {}, v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v)))); })));
  // ClassificationMetrics by "task.output" across runs: the ROC curves of all runs on one plot, the
  // confusion matrices side by side.
  const ckeys = [...new Set(got.flatMap(g => g.classification.map(c => `${c.task}.${c.name}`)))].sort();
  const cls = (i, k) => got[i].classification.find(c => `${c.task}.${c.name}` === k);
  const plots = ckeys.map((k, ki) => {
    const roc = names.map((n, i) => ({ name: n, points: ((cls(i, k) || {}).metadata || {}).confidenceMetrics })).filter(x => x.points && x.points.length);
    const cms = names.map((n, i) => ({ name: n, cm: ((cls(i, k) || {}).metadata || {}).confusionMatrix })).filter(x => x.cm);
    return h("section", { class: "compare-classification", "data-key": k }, h("h3", {}, k),
      roc.length ? h("figure", {}, h("figcaption", {}, "ROC curves"), rocOverlay(roc, { id: ki ? `compare-roc-${ki}` : "compare-roc" })) : null,
      cms.length ? h("div", { class: "cm-row", id: ki ? `compare-confusion-${ki}` : "compare-confusion" },
        cms.map(x => h("figure", {}, h("figcaption", {}, x.name), confusionMatrix(x.cm, { id: null })))) : null);
  });
  mount(root, h("h1", {}, "Compare runs"),
    h("h2", {}, "Overview"), side(["state", "duration"], (r, i, k) => (k === "state" ? r.state : duration(r.created_at, r.finished_at))),
    h("h2", {}, "Parameters"), h("div", { id: "compare-params" }, side(pkeys, (r, i, k) => ((r.runtime_config || {}).parameters || {})[k])),
    h("h2", {}, "Metrics"), h("div", { id: "compare-metrics" }, mkeys.length ? side(mkeys, (r, i, k) => ms[i][k]) : h("p", { class: "muted" }, "No scalar metrics.")),
    mkeys.length ? h("div", { class: "charts" }, h("figure", {}, h("figcaption", {}, "Scalar metrics (each metric scaled to its largest value)"),
      groupedBarChart(mkeys.map(k => ({ label: k, values: ms.map(m => m[k]) })), names))) : null,
    ckeys.length ? [h("h2", {}, "Classification"), plots] : null);
}

export async function newRun(root, _p, ctx) {
  let pls, exps;
  try {
    [pls, exps] = await Promise.all([get(kfp(`/pipelines?${q("page_size=200")}`)), get(kfp(`/experiments?${q(nsq(ctx), "page_size=200")}`))]);
  } catch (e) { return unavailable(root, "Create run", e); }
  let clone = null;
  if (ctx.query.get("clone")) clone = await get(kfp(`/runs/${ctx.query.get("clone")}`));
  const plSel = h("select", { id: "run-pipeline" }, (pls.pipelines || []).map(p => h("option", { value: p.pipeline_id }, p.display_name || p.name)));
  const verSel = h("select", { id: "run-version" });
  const expSel = h("select", { id: "run-experiment" }, h("option", { value: "" }, "(Default)"), (exps.experiments || []).map(e => h("option", { value: e.experiment_id }, e.display_name)));
  const name = h("input", { id: "run-name", placeholder: "run name", required: true });
  const paramsBox = h("div", { class: "params", id: "run-params" });
  const out = h("div");
  let inputs = {};
  const ref = clone && clone.pipeline_version_reference;
  if (ctx.query.get("pipeline") || ref) plSel.value = ctx.query.get("pipeline") || ref.pipeline_id;
  if (ctx.query.get("experiment") || clone) expSel.value = ctx.query.get("experiment") || clone.experiment_id || "";
  if (clone) name.value = `Clone of ${clone.display_name}`;
  async function loadVersions() {
    if (!plSel.value) return;
    const vs = (await get(kfp(`/pipelines/${plSel.value}/versions?page_size=100&sort_by=created_at%20desc`))).pipeline_versions || [];
    mount(verSel, vs.map(v => h("option", { value: v.pipeline_version_id }, v.display_name || v.pipeline_version_id)));
    if (ctx.query.get("version")) verSel.value = ctx.query.get("version");
    else if (ref) verSel.value = ref.pipeline_version_id;
    await loadParams();
  }
  async function loadParams() {
    clear(paramsBox);
    if (!verSel.value) return;
    const v = await get(kfp(`/pipelines/${plSel.value}/versions/${verSel.value}`));
    const spec = specOf(v) || {};
    inputs = ((spec.root || {}).inputDefinitions || {}).parameters || {};
    const given = clone ? (clone.runtime_config || {}).parameters || {} : {};
    for (const [k, d] of Object.entries(inputs)) {
      const dflt = given[k] ?? d.defaultValue;
      const type = d.parameterType || "STRING";
      const input = type === "BOOLEAN" ? h("input", { type: "checkbox", name: k, checked: !!dflt })
        : h("input", { name: k, type: /NUMBER/.test(type) ? "number" : "text", step: type === "NUMBER_DOUBLE" ? "any" : undefined,
          value: dflt === undefined ? "" : typeof dflt === "object" ? JSON.stringify(dflt) : String(dflt), required: dflt === undefined && !d.isOptional });
      paramsBox.appendChild(h("label", {}, `${k} `, h("span", { class: "muted" }, type.toLowerCase()), input));
    }
  }
  plSel.addEventListener("change", loadVersions);
  verSel.addEventListener("change", loadParams);
  async function submit(ev) {
    ev.preventDefault();
    clear(out);
    const params = {};
    for (const [k, d] of Object.entries(inputs)) {
      const el = paramsBox.querySelector(`[name="${CSS.escape(k)}"]`);
      const t = d.parameterType || "STRING";
      if (t === "BOOLEAN") params[k] = el.checked;
      else if (el.value === "") continue;
      else if (/NUMBER/.test(t)) params[k] = Number(el.value);
      else if (/STRUCT|LIST/.test(t)) { try { params[k] = JSON.parse(el.value); } catch { out.appendChild(errorBox(`parameter ${k}: not valid JSON`)); return; } }
      else params[k] = el.value;
    }
    const body = { display_name: name.value, pipeline_version_reference: { pipeline_id: plSel.value, pipeline_version_id: verSel.value }, runtime_config: { parameters: params } };
    if (expSel.value) body.experiment_id = expSel.value;
    try { const r = await req("POST", kfp("/runs"), body); location.hash = `#/runs/details/${r.run_id}`; } catch (e) { out.appendChild(errorBox(e)); }
  }
  mount(root, h("h1", {}, "Create run"), h("form", { class: "form", onsubmit: submit },
    h("label", {}, "Pipeline ", plSel), h("label", {}, "Version ", verSel), h("label", {}, "Experiment ", expSel), h("label", {}, "Name ", name),
    h("h3", {}, "Parameters"), paramsBox, h("button", { type: "submit", id: "run-submit" }, "Start")), out);
  await loadVersions();
}

// ---------------------------------------------------------------- experiments
export async function experiments(root, _p, ctx) {
  let data;
  try { data = await get(kfp(`/experiments?${q(nsq(ctx), "page_size=200", "sort_by=created_at%20desc")}`)); } catch (e) { return unavailable(root, "Experiments", e); }
  const name = h("input", { id: "exp-name", placeholder: "new experiment name" });
  const out = h("div");
  const create = async (ev) => {
    ev.preventDefault();
    try { const e = await req("POST", kfp("/experiments"), { display_name: name.value, namespace: nsOf(ctx) }); location.hash = `#/experiments/details/${e.experiment_id}`; } catch (e) { out.appendChild(errorBox(e)); }
  };
  mount(root, h("h1", {}, "Experiments"), h("form", { class: "toolbar", onsubmit: create }, name, h("button", { type: "submit" }, "Create experiment")), out,
    table([
      { title: "Experiment", value: e => e.display_name, render: e => link(`#/experiments/details/${e.experiment_id}`, e.display_name) },
      { title: "Description", value: e => e.description || "" },
      { title: "State", value: e => e.storage_state, render: e => badge(e.storage_state) },
      { title: "Last run", value: e => e.last_run_created_at || "", render: e => e.last_run_created_at ? age(e.last_run_created_at) + " ago" : "" },
    ], data.experiments || [], { id: "experiments" }));
}

export async function experimentDetails(root, p) {
  let e, rs, rr;
  try {
    [e, rs, rr] = await Promise.all([get(kfp(`/experiments/${p.id}`)), get(kfp(`/runs?experiment_id=${p.id}&page_size=200&sort_by=created_at%20desc`)),
      get(kfp(`/recurringruns?experiment_id=${p.id}&page_size=100`)).catch(() => ({}))]);
  } catch (err) { return unavailable(root, "Experiment", err); }
  const runsList = rs.runs || [];
  mount(root, h("h1", {}, e.display_name), h("p", { class: "muted" }, e.description || ""),
    h("div", { class: "toolbar" }, link(`#/runs/new?experiment=${e.experiment_id}`, "Create run"),
      runsList.length > 1 ? link(`#/compare?runs=${runsList.slice(0, 10).map(r => r.run_id).join(",")}`, "Compare latest runs") : null),
    h("h2", {}, "Runs"), table([
      { title: "Run", value: r => r.display_name, render: r => link(`#/runs/details/${r.run_id}`, r.display_name || r.run_id) },
      { title: "State", value: r => r.state, render: r => badge(r.state) },
      { title: "Duration", value: r => duration(r.created_at, r.finished_at) },
      { title: "Created", value: r => r.created_at, render: r => age(r.created_at) + " ago" },
    ], runsList, { id: "experiment-runs" }),
    h("h2", {}, "Recurring runs"), recurringTable(rr.recurringRuns || rr.recurring_runs || []));
}

// ---------------------------------------------------------------- recurring runs
function recurringTable(items, reload) {
  const toggle = (r) => async (ev) => { ev.stopPropagation(); await req("POST", kfp(`/recurringruns/${r.recurring_run_id}:${r.mode === "ENABLE" ? "disable" : "enable"}`)); if (reload) reload(); };
  return table([
    { title: "Recurring run", value: r => r.display_name, render: r => link(`#/recurringruns/details/${r.recurring_run_id}`, r.display_name) },
    { title: "Status", value: r => r.status || r.mode, render: r => badge(r.status || r.mode) },
    { title: "Trigger", value: r => trigger(r.trigger) },
    { title: "Created", value: r => r.created_at, render: r => age(r.created_at) + " ago" },
    { title: "", render: r => h("button", { class: "toggle", onclick: toggle(r) }, r.mode === "ENABLE" ? "Disable" : "Enable") },
  ], items, { id: "recurring-runs", empty: "No recurring runs." });
}
const trigger = (t) => !t ? "" : t.cron_schedule ? `cron ${t.cron_schedule.cron}` : t.periodic_schedule ? `every ${t.periodic_schedule.interval_second}s` : JSON.stringify(t);

export async function recurringRuns(root, _p, ctx) {
  const box = h("div");
  async function load() {
    const d = await get(kfp(`/recurringruns?${q(nsq(ctx), "page_size=200")}`));
    mount(box, recurringTable(d.recurringRuns || d.recurring_runs || [], load));
  }
  try { await load(); } catch (e) { return unavailable(root, "Recurring runs", e); }
  const [pls, exps] = await Promise.all([get(kfp(`/pipelines?${q("page_size=200")}`)), get(kfp(`/experiments?${q(nsq(ctx), "page_size=200")}`))]);
  const name = h("input", { id: "rr-name", placeholder: "name", required: true });
  const plSel = h("select", { id: "rr-pipeline" }, (pls.pipelines || []).map(p => h("option", { value: p.pipeline_id }, p.display_name)));
  const expSel = h("select", { id: "rr-experiment" }, (exps.experiments || []).map(e => h("option", { value: e.experiment_id }, e.display_name)));
  const cron = h("input", { id: "rr-cron", placeholder: "cron (6 fields, e.g. 0 0 * * * *)" });
  const every = h("input", { id: "rr-interval", type: "number", placeholder: "or interval seconds" });
  const out = h("div");
  const create = async (ev) => {
    ev.preventDefault();
    try {
      const vs = (await get(kfp(`/pipelines/${plSel.value}/versions?page_size=1&sort_by=created_at%20desc`))).pipeline_versions || [];
      const body = { display_name: name.value, experiment_id: expSel.value, mode: "ENABLE", max_concurrency: "1",
        pipeline_version_reference: { pipeline_id: plSel.value, pipeline_version_id: vs[0] && vs[0].pipeline_version_id },
        trigger: cron.value ? { cron_schedule: { cron: cron.value } } : { periodic_schedule: { interval_second: String(every.value || 3600) } } };
      await req("POST", kfp("/recurringruns"), body);
      await load();
    } catch (e) { out.appendChild(errorBox(e)); }
  };
  mount(root, h("h1", {}, "Recurring runs"), box, h("h2", {}, "New recurring run"),
    h("form", { class: "form", onsubmit: create }, h("label", {}, "Name ", name), h("label", {}, "Pipeline ", plSel), h("label", {}, "Experiment ", expSel),
      h("label", {}, "Cron ", cron), h("label", {}, "Interval ", every), h("button", { type: "submit", id: "rr-submit" }, "Create")), out);
}

export async function recurringDetails(root, p) {
  let r, rs;
  try { [r, rs] = await Promise.all([get(kfp(`/recurringruns/${p.id}`)), get(kfp(`/runs?page_size=200&sort_by=created_at%20desc`))]); } catch (e) { return unavailable(root, "Recurring run", e); }
  const mine = (rs.runs || []).filter(x => x.recurring_run_id === p.id);
  mount(root, h("h1", {}, r.display_name), h("p", {}, badge(r.status || r.mode), ` · ${trigger(r.trigger)}`),
    h("button", { onclick: async () => { await req("POST", kfp(`/recurringruns/${p.id}:${r.mode === "ENABLE" ? "disable" : "enable"}`)); location.reload(); } }, r.mode === "ENABLE" ? "Disable" : "Enable"),
    h("h2", {}, "Parameters"), kv((r.runtime_config || {}).parameters),
    h("h2", {}, "Runs"), table([
      { title: "Run", value: x => x.display_name, render: x => link(`#/runs/details/${x.run_id}`, x.display_name) },
      { title: "State", value: x => x.state, render: x => badge(x.state) },
      { title: "Created", value: x => x.created_at, render: x => age(x.created_at) + " ago" },
    ], mine));
}
export { lineChart };
