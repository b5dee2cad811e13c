// Training jobs: every training kind the server serves (kubeflow.org/v1 *jobs, trainer.kubeflow.org TrainJob),
// listed live; a job's page shows replicas with their pods' states and restarts, conditions, events, logs.
import { h, mount, clear, table, badge, age, link } from "../dom.js";
import { kinds, resPath, liveObjects, follow, pollLists } from "../api.js";
import { nsOf, objectPage, inWhere } from "./resources.js";

const TRAINING = [["kubeflow.org", /^(pytorch|tf|mpi|xgboost|paddle|jax|mx)jobs$/], ["trainer.kubeflow.org", /^trainjobs$/]];

export async function trainingKinds() {
  return (await kinds()).filter(k => TRAINING.some(([g, re]) => k.group === g && re.test(k.plural)));
}

export function jobState(o) {
  const conds = (o.status && o.status.conditions) || [];
  const on = conds.filter(c => c.status === "True");
  return on.length ? on[on.length - 1].type : "Created";
}

export async function list(root, _p, ctx) {
  const ks = await trainingKinds();
  const ns = nsOf(ctx);
  const boxes = new Map();
  const rows = new Map();
  const t = table([
    { title: "Name", value: r => r.o.metadata.name, render: r => link(`#/training/${r.k.group}/${r.k.plural}/${r.o.metadata.namespace}/${encodeURIComponent(r.o.metadata.name)}`, r.o.metadata.name) },
    { title: "Kind", value: r => r.k.kind },
    { title: "Namespace", value: r => r.o.metadata.namespace },
    { title: "State", value: r => jobState(r.o), render: r => badge(jobState(r.o)) },
    { title: "Replicas", value: r => replicaSummary(r.o) },
    { title: "Age", value: r => r.o.metadata.creationTimestamp, render: r => age(r.o.metadata.creationTimestamp) },
  ], [], { id: "training-jobs", empty: ks.length ? `No training jobs ${inWhere(ctx)}.` : "No training kinds are served by this ketch yet." });
  // polled, not watched: seven training kinds would take more connections than a browser gives a page
  const byPlural = new Map(ks.map(k => [k.plural, k]));
  const poller = pollLists(ks.map(k => [k.plural, resPath(k, ns)]), {
    onChange(plural, items) { const k = byPlural.get(plural); rows.set(plural, items.map(o => ({ k, o }))); },
    onRound() { t.setRows([...rows.values()].flat()); },
  });
  mount(root, h("h1", {}, "Training jobs"), h("div", { class: "toolbar" }, ks.map(k => link(`#/create?kind=${encodeURIComponent(k.gv + "/" + k.kind)}`, `New ${k.kind}`))), t);
  void boxes;
  return () => poller.stop();
}

function replicaSpecs(o) {
  const spec = o.spec || {};
  for (const [k, v] of Object.entries(spec)) if (/ReplicaSpecs$/.test(k) && v && typeof v === "object") return v;
  return {};
}
function replicaSummary(o) {
  const specs = replicaSpecs(o);
  const st = (o.status && o.status.replicaStatuses) || {};
  return Object.entries(specs).map(([role, s]) => {
    const r = st[role] || {};
    return `${role} ${r.succeeded || 0}/${s.replicas ?? 1}${r.active ? ` (${r.active} active)` : ""}${r.failed ? ` (${r.failed} failed)` : ""}`;
  }).join(", ");
}

export async function details(root, p, ctx) {
  const k = (await trainingKinds()).find(x => x.group === p.group && x.plural === p.plural);
  if (!k) throw new Error(`No training kind ${p.plural}`);
  const replicas = h("div", { id: "replicas" });
  const podsBox = h("div", { id: "pods" });
  const logBox = h("pre", { class: "log", id: "pod-log" });
  let logStop = null, pods = [];
  const label = k.group === "trainer.kubeflow.org" ? "jobset.sigs.k8s.io/jobset-name" : "training.kubeflow.org/job-name";
  const podWatch = liveObjects(`/api/v1/namespaces/${encodeURIComponent(p.ns)}/pods`, {
    query: `labelSelector=${encodeURIComponent(label + "=" + p.name)}`,
    onChange(items) { pods = items; drawPods(); },
  });
  function openLog(pod) {
    if (logStop) logStop.stop();
    logBox.textContent = "";
    logStop = follow(`/api/v1/namespaces/${encodeURIComponent(p.ns)}/pods/${encodeURIComponent(pod)}/log?follow=true&tailLines=500`, (t) => { logBox.textContent += t; logBox.scrollTop = logBox.scrollHeight; });
  }
  function drawPods() {
    const restarts = (o) => ((o.status && o.status.containerStatuses) || []).reduce((a, c) => a + (c.restartCount || 0), 0);
    mount(podsBox, table([
      { title: "Pod", value: o => o.metadata.name },
      { title: "Role", value: o => (o.metadata.labels || {})["training.kubeflow.org/replica-type"] || (o.metadata.labels || {})["jobset.sigs.k8s.io/replicatedjob-name"] || "" },
      { title: "Index", value: o => (o.metadata.labels || {})["training.kubeflow.org/replica-index"] || "" },
      { title: "Phase", value: o => (o.status || {}).phase, render: o => badge((o.status || {}).phase || "Pending") },
      { title: "Restarts", value: restarts },
      { title: "", render: o => h("button", { class: "logs", onclick: () => openLog(o.metadata.name) }, "Logs") },
    ], pods, { id: "job-pods", empty: "No pods yet." }));
  }
  drawPods();
  const body = h("div");
  const cleanup = objectPage(body, k, p.ns, p.name, ctx, {
    extra(box, o) {
      const specs = replicaSpecs(o), st = (o.status && o.status.replicaStatuses) || {};
      mount(replicas, table([
        { title: "Replica type", value: r => r[0] },
        { title: "Desired", value: r => r[1].replicas ?? 1 },
        { title: "Active", value: r => (st[r[0]] || {}).active || 0 },
        { title: "Succeeded", value: r => (st[r[0]] || {}).succeeded || 0 },
        { title: "Failed", value: r => (st[r[0]] || {}).failed || 0 },
        { title: "Restart policy", value: r => r[1].restartPolicy || "" },
      ], Object.entries(specs), { id: "replica-table", empty: "No replica specs." }));
      if (!box.firstChild) mount(box, h("h2", {}, "Replicas"), replicas, h("h2", {}, "Pods"), podsBox, h("h2", {}, "Logs"), logBox);
    },
  });
  mount(root, body);
  return () => { cleanup(); podWatch.stop(); if (logStop) logStop.stop(); clear(root); };
}
