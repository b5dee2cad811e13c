// Neural Architecture Search (an Experiment with spec.nasConfig): the best trial's architecture, read as
// Katib's suggestions hand it out, drawn as tables. ENAS trials carry `architecture` (one row per layer:
// the operation id, then a 0/1 per earlier layer for its skip connections) and `nn_config` (the embedding
// from operation id to {opt_type, opt_params}); a DARTS trial reports its genotype, as Katib's DARTS
// trainer does (`Genotype(normal=[[(op, input), ...], ...], reduce=[...])`) or as a list of one
// operation per layer.
import { h, table } from "../dom.js";

// Katib hands these parameters out with ' for ".
const dq = (s) => JSON.parse(String(s).replace(/'/g, '"'));

// nasConfig's operations expanded as ketch/tuning/algorithms/nas_space.py does: one candidate per
// combination of parameter values, numbered in order (used when a trial has no nn_config).
function values(p) {
  const fs = p.feasibleSpace || {};
  if (p.parameterType === "categorical" || p.parameterType === "discrete") return (fs.list || []).map(String);
  const lo = Number(fs.min), hi = Number(fs.max), step = Number(fs.step || (p.parameterType === "int" ? 1 : 0));
  if (!(step > 0)) return [];
  const out = [];
  for (let v = lo; v <= hi + 1e-9; v += step) out.push(p.parameterType === "int" ? String(Math.round(v)) : String(v));
  return out;
}
export function expandOperations(nas) {
  const out = [];
  for (const op of (nas || {}).operations || []) {
    const params = op.parameters || [];
    let combos = [[]];
    for (const p of params) combos = combos.flatMap(c => values(p).map(v => [...c, v]));
    for (const c of combos) out.push({ opt_id: out.length, opt_type: op.operationType, opt_params: Object.fromEntries(params.map((p, i) => [p.name, c[i]])) });
  }
  return out;
}

const params = (o) => Object.entries((o && o.opt_params) || {}).map(([k, v]) => `${k}=${v}`).join(", ");

// ENAS: a row per layer with its operation, the operation's parameters and where its skip connections come from.
export function enasArchitecture(archValue, configValue, nas) {
  const arch = dq(archValue);
  let emb = null;
  try { emb = dq(configValue).embedding; } catch { emb = null; }
  if (!emb) emb = Object.fromEntries(expandOperations(nas).map(o => [String(o.opt_id), o]));
  const rows = arch.map((row, i) => ({ layer: i + 1, id: row[0], op: emb[String(row[0])], skips: row.slice(1).flatMap((v, j) => (Number(v) ? [j + 1] : [])) }));
  return table([
    { title: "Layer", value: r => r.layer },
    { title: "Operation", value: r => (r.op ? r.op.opt_type : `operation ${r.id}`), render: r => h("span", { class: "nas-op" }, r.op ? r.op.opt_type : `operation ${r.id}`) },
    { title: "Parameters", value: r => params(r.op) },
    { title: "Skip connections from", value: r => r.skips.join(","), render: r => (r.skips.length ? r.skips.map(s => `layer ${s}`).join(", ") : h("span", { class: "muted" }, "none")) },
  ], rows, { id: "nas-layers", sortable: false, empty: "No layers." });
}

// A trial's architecture in one line, its operations by layer ("reduction > convolution"), for the trials table.
export function architectureSummary(trial, nas) {
  const a = Object.fromEntries((((trial || {}).spec || {}).parameterAssignments || []).map(x => [x.name, x.value]));
  if (!a.architecture) return "";
  try {
    let emb = null;
    try { emb = dq(a.nn_config).embedding; } catch { emb = Object.fromEntries(expandOperations(nas).map(o => [String(o.opt_id), o])); }
    return dq(a.architecture).map(r => (emb[String(r[0])] || {}).opt_type || `operation ${r[0]}`).join(" > ");
  } catch { return a.architecture; }
}

// The text after `name=` from index i, up to its matching bracket.
function bracketed(text, i) {
  const open = "[(", close = "])";
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    if (open.includes(text[j])) depth++;
    else if (close.includes(text[j]) && --depth === 0) return text.slice(i, j + 1);
  }
  return null;
}
// A genotype as rows {cell, node, input, op}; null when the text is neither form.
export function parseGenotype(text) {
  const t = String(text || "").trim();
  if (t.startsWith("Genotype(")) {
    const rows = [];
    for (const cell of ["normal", "reduce"]) {
      const at = t.search(new RegExp(`\\b${cell}=`));
      if (at < 0) continue;
      const lit = bracketed(t, t.indexOf("[", at));
      if (!lit) return null;
      let nodes = JSON.parse(lit.replace(/\(/g, "[").replace(/\)/g, "]").replace(/'/g, '"'));
      if (nodes.length && typeof nodes[0][0] === "string") {  // the flat form: two edges per node
        const flat = nodes; nodes = [];
        for (let k = 0; k < flat.length; k += 2) nodes.push(flat.slice(k, k + 2));
      }
      nodes.forEach((edges, n) => edges.forEach(([op, input]) => rows.push({ cell, node: n, input: Number(input), op })));
    }
    return rows.length ? { kind: "cells", rows } : null;
  }
  try {
    const ops = dq(t);
    if (Array.isArray(ops) && ops.every(o => typeof o === "string")) return { kind: "layers", rows: ops.map((op, i) => ({ layer: i + 1, op })) };
  } catch { /* not a list */ }
  return null;
}

// DARTS' numbering: inputs 0 and 1 are the two previous cells' outputs, input n >= 2 is intermediate node n - 2.
const inputName = (i) => (i === 0 ? "c(k-2)" : i === 1 ? "c(k-1)" : `node ${i - 2}`);

export function genotypeTable(g) {
  if (g.kind === "layers") {
    return table([{ title: "Layer", value: r => r.layer }, { title: "Operation", value: r => r.op, render: r => h("span", { class: "nas-op" }, r.op) }],
      g.rows, { id: "nas-genotype", sortable: false });
  }
  return table([
    { title: "Cell", value: r => r.cell },
    { title: "Node", value: r => r.node },
    { title: "Edge from", value: r => inputName(r.input) },
    { title: "Operation", value: r => r.op, render: r => h("span", { class: "nas-op" }, r.op) },
  ], g.rows, { id: "nas-genotype", sortable: false });
}

// The genotype a trial reported: a metric whose name says genotype (Katib's `Best-Genotype`, collected with
// a filter such as `([\w-]+)=(Genotype.*)`), else null (the caller then reads the trial's log).
export function genotypeMetric(trialOrBest) {
  const ms = ((trialOrBest || {}).observation || {}).metrics || [];
  const m = ms.find(x => /genotype/i.test(x.name) && x.latest && x.latest !== "unavailable");
  return m ? m.latest : null;
}
export function genotypeInLog(text) {
  const all = [...String(text || "").matchAll(/Genotype\s*=\s*(.+)$/gim)];
  return all.length ? all[all.length - 1][1].trim() : null;
}

// The panel: ENAS' layers and/or DARTS' genotype of the best trial (genotype: text, or undefined while it is looked up).
export function bestArchitecture(exp, best, genotype) {
  const assigned = Object.fromEntries(((best || {}).parameterAssignments || []).map(a => [a.name, a.value]));
  const parts = [];
  if (assigned.architecture) {
    try { parts.push(enasArchitecture(assigned.architecture, assigned.nn_config, exp.spec.nasConfig)); } catch (e) { parts.push(h("p", { class: "muted" }, `architecture not readable: ${e.message}`)); }
  }
  if (genotype) {
    const g = parseGenotype(genotype);
    parts.push(h("h3", {}, "Genotype"), g ? genotypeTable(g) : h("pre", { class: "log" }, genotype));
  } else if (assigned["search-space"] || ((exp.spec || {}).algorithm || {}).algorithmName === "darts") {
    parts.push(h("p", { class: "muted" }, genotype === undefined ? "reading the genotype..." : "The trial has not reported a genotype (a Best-Genotype= line or metric)."));
  }
  if (!best || !best.bestTrialName) parts.push(h("p", { class: "muted" }, "none yet"));
  return h("div", { id: "best-architecture" }, h("h2", {}, "Best architecture"), ...(best && best.bestTrialName ? [h("p", { class: "muted" }, `of ${best.bestTrialName}`)] : []), ...parts);
}
