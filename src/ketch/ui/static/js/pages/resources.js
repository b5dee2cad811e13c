// The generic pages: every kind from discovery, listed with its printer columns (server-side Tables) and
// kept live by a watch; any object's YAML viewed, edited and applied; events; search; create.
import { h, mount, clear, table, errorBox, badge, age, link, kv, batched } from "../dom.js";
import { get, req, kinds, findKind, resPath, listWatch, liveObjects, follow, TABLE, ApiError } from "../api.js";
import { dump, header, lineOf } from "../yaml.js";

export const nsOf = (ctx) => (ctx.ns.get() === "*" ? "" : ctx.ns.get());
// Where a list looked, for its empty message: "in namespace kubeflow" / "in any namespace".
export const inWhere = (ctx) => (nsOf(ctx) ? `in namespace ${nsOf(ctx)}` : "in any namespace");
const gk = (k) => k.group || "core";
export const objHref = (k, ns, name) => `#/resources/${gk(k)}/${k.plural}/${ns || "_"}/${encodeURIComponent(name)}`;

export async function index(root) {
  const ks = await kinds();
  const filter = h("input", { type: "search", placeholder: "Filter kinds", id: "kind-filter" });
  const byGroup = new Map();
  for (const k of ks) { if (!k.verbs.includes("list")) continue; (byGroup.get(k.gv) || byGroup.set(k.gv, []).get(k.gv)).push(k); }
  const body = h("div", { class: "groups" });
  const draw = () => {
    const f = filter.value.toLowerCase();
    clear(body);
    for (const [gv, list] of [...byGroup.entries()].sort()) {
      const shown = list.filter(k => !f || k.kind.toLowerCase().includes(f) || k.plural.includes(f));
      if (!shown.length) continue;
      body.appendChild(h("section", { class: "group" }, h("h3", {}, gv),
        h("ul", {}, shown.map(k => h("li", {}, link(`#/resources/${gk(k)}/${k.plural}`, k.kind), h("span", { class: "muted" }, ` ${k.plural}`))))));
    }
  };
  filter.addEventListener("input", draw);
  draw();
  mount(root, h("h1", {}, "Resources"), h("div", { class: "toolbar" }, filter, link("#/create", "Create from YAML")), body);
}

// A live table of any kind, drawn from the server's Table (printer columns), updated by a Table watch.
export function liveTable(k, ns, { query = "", onRow, extra = [] } = {}) {
  const wrap = h("div", { class: "live-table" });
  let cols = [], rows = new Map(), t = null, sig = "";
  const key = r => `${r.object.metadata.namespace || ""}/${r.object.metadata.name}`;
  const draw = batched(() => {
    const defs = cols.map((c, i) => ({ c, i })).filter(({ c }) => !c.priority);
    const showNs = k.namespaced && !ns;
    const columns = [];
    if (showNs) columns.push({ title: "Namespace", value: r => r.object.metadata.namespace });
    for (const { c, i } of defs) {
      columns.push({
        title: c.name, value: r => r.cells[i],
        render: i === 0 ? r => link(objHref(k, r.object.metadata.namespace, r.object.metadata.name), String(r.cells[0]))
          : /status|state|phase/i.test(c.name) ? r => (r.cells[i] !== null ? badge(r.cells[i]) : "") : undefined,
      });
    }
    columns.push(...extra);
    // Same columns: keep the table (and the user's sort order), only its rows change.
    const now = JSON.stringify(columns.map(c => c.title));
    if (t && now === sig) { t.setRows([...rows.values()]); return; }
    sig = now;
    t = table(columns, [...rows.values()], { onRow, empty: `No ${k.plural} ${ns ? "in namespace " + ns : "in any namespace"}.` });
    t.classList.add("resource-table");
    t.dataset.kind = k.plural;
    mount(wrap, t);
  });
  const w = listWatch(resPath(k, ns), {
    query, table: true,
    onList(tbl) { cols = tbl.columnDefinitions || []; rows = new Map((tbl.rows || []).map(r => [key(r), r])); draw(); },
    onEvent(type, tbl) {
      if (tbl.columnDefinitions && tbl.columnDefinitions.length) cols = tbl.columnDefinitions;
      for (const r of tbl.rows || []) { if (type === "DELETED") rows.delete(key(r)); else rows.set(key(r), r); }
      draw();
    },
    onError(e) { wrap.prepend(errorBox(e)); },
  });
  wrap.stop = () => w.stop();
  return wrap;
}

export async function list(root, p, ctx) {
  const k = await findKind(p.group === "core" ? "" : p.group, p.plural);
  if (!k) throw new Error(`No kind ${p.plural} in group ${p.group}`);
  const ns = k.namespaced ? nsOf(ctx) : "";
  const t = liveTable(k, ns);
  mount(root, h("h1", {}, k.kind), h("p", { class: "muted" }, `${k.gv} · ${k.plural}${k.namespaced ? " · namespace " + (ns || "all") : " · cluster-scoped"}`),
    h("div", { class: "toolbar" }, link(`#/create?kind=${encodeURIComponent(k.gv + "/" + k.kind)}`, `New ${k.kind}`)), t);
  return () => t.stop();
}

export async function details(root, p, ctx) {
  const k = await findKind(p.group === "core" ? "" : p.group, p.plural);
  if (!k) throw new Error(`No kind ${p.plural} in group ${p.group}`);
  const ns = p.ns === "_" ? "" : p.ns;
  if (k.group === "" && k.plural === "pods") return podPage(root, k, ns, p.name, ctx);
  return objectPage(root, k, ns, p.name, ctx);
}

// A Pod's page adds its containers and a live log tail (the kubelet's log endpoint, followed).
function podPage(root, k, ns, name, ctx) {
  const log = h("pre", { class: "log", id: "pod-log" });
  const sel = h("select", { id: "pod-container" });
  let stream = null, phase = null;
  const open = () => {
    if (stream) stream.stop();
    log.textContent = "";
    stream = follow(`${resPath(k, ns, name)}/log?follow=true&tailLines=1000&container=${encodeURIComponent(sel.value)}`, (t) => {
      log.textContent += t;
      if (log.textContent.length > 400000) log.textContent = log.textContent.slice(-300000);
      log.scrollTop = log.scrollHeight;
    });
  };
  sel.addEventListener("change", open);
  const stop = objectPage(root, k, ns, name, ctx, {
    extra(box, pod) {
      const names = ((pod.spec || {}).containers || []).map(c => c.name);
      if (!box.firstChild) {
        mount(sel, names.map(n => h("option", { value: n }, n)));
        mount(box, h("h2", {}, "Log"), h("div", { class: "toolbar" }, sel), log);
        open();
      } else if (phase !== (pod.status || {}).phase && (!log.textContent || log.textContent.startsWith("["))) {
        open();  // the log was not there yet when the page opened: try again now that the Pod moved on
      }
      phase = (pod.status || {}).phase;
    },
  });
  return () => { stop(); if (stream) stream.stop(); };
}

// Title, conditions, YAML editor and events of one object, kept live by a watch on it.
export function objectPage(root, k, ns, name, ctx, { extra } = {}) {
  const head = h("div", { class: "obj-head" });
  const extraBox = h("div", { class: "obj-extra" });
  const edBox = h("div");
  let editor = null, latest = null;
  const w = listWatch(resPath(k, ns), {
    query: `fieldSelector=${encodeURIComponent("metadata.name=" + name)}`,
    onList(lst) { latest = (lst.items || [])[0] || null; render(); },
    onEvent(type, o) { latest = type === "DELETED" ? null : o; render(); },
  });
  const evs = eventsTable(ns, name, k.kind);
  function render() {
    if (!latest) { mount(head, h("h1", {}, name), errorBox(`${k.kind} ${name} not found (or deleted)`)); return; }
    const st = latest.status || {};
    mount(head, h("h1", {}, `${k.kind} ${name}`),
      h("p", { class: "muted" }, `${k.gv}${ns ? " · " + ns : ""} · created ${age(latest.metadata.creationTimestamp)} ago · rv ${latest.metadata.resourceVersion}`),
      st.phase ? h("p", {}, "Phase ", badge(st.phase)) : null,
      conditions(st.conditions));
    if (extra) extra(extraBox, latest);
    if (!editor) { editor = yamlEditor(k, ns, latest); mount(edBox, editor); } else editor.external(latest);
  }
  mount(root, head, extraBox, h("h2", {}, "YAML"), edBox, h("h2", {}, "Events"), evs);
  return () => { w.stop(); evs.stop(); };
}

export function conditions(conds) {
  if (!conds || !conds.length) return null;
  return table([
    { title: "Condition", value: c => c.type }, { title: "Status", value: c => c.status, render: condBadge },
    { title: "Reason", value: c => c.reason || "" }, { title: "Message", value: c => c.message || "" },
    { title: "Last transition", value: c => age(c.lastTransitionTime) },
  ], conds, { id: "conditions" });
}

// A condition's status coloured by what it means: True on a failure type is bad, False is just not-now.
function condBadge(c) {
  const failure = /fail|error|stalled|degraded|evicted/i.test(c.type);
  const b = badge(c.status);
  b.className = "badge " + (c.status === "True" ? (failure ? "bad" : "ok") : c.status === "False" ? (failure ? "ok" : "idle") : "busy");
  return b;
}

function stripForEdit(o) {
  const c = structuredClone(o);
  if (c.metadata) delete c.metadata.managedFields;
  return c;
}

// The YAML editor: PUT (or server-side apply) through the API; a rejected write shows the Status message
// and each cause next to the line of its field, and the text stays as the user left it.
export function yamlEditor(k, ns, obj, { create = false } = {}) {
  const ta = h("textarea", { class: "yaml", spellcheck: "false", id: "yaml-text", "aria-label": "YAML" });
  ta.value = obj ? dump(stripForEdit(obj)) : "";
  let dirty = false;
  ta.addEventListener("input", () => { dirty = true; note.textContent = "edited — not applied"; });
  const errs = h("div", { class: "yaml-errors", id: "yaml-errors", "aria-live": "polite" });
  const note = h("span", { class: "muted", id: "yaml-note" }, "");
  async function send(mode) {
    clear(errs);
    const text = ta.value;
    const hd = header(text);
    try {
      let kk = k, nn = ns;
      if (!kk || create) {
        if (!hd.apiVersion || !hd.kind) throw new Error("apiVersion and kind are required");
        kk = (await kinds()).find(x => x.gv === hd.apiVersion && x.kind === hd.kind);
        if (!kk) throw new Error(`the server does not serve kind ${hd.kind} in ${hd.apiVersion}`);
        nn = kk.namespaced ? (hd.namespace || ns || "default") : "";
      }
      let out;
      if (mode === "apply") {
        if (!hd.name) throw new Error("metadata.name is required for server-side apply");
        out = await req("PATCH", resPath(kk, nn, hd.name) + "?fieldManager=ketch-dashboard&force=true", text, { "Content-Type": "application/apply-patch+yaml" });
      } else if (create) {
        out = await req("POST", resPath(kk, nn) + "?fieldManager=ketch-dashboard", text, { "Content-Type": "application/yaml" });
      } else {
        out = await req("PUT", resPath(kk, nn, obj.metadata.name) + "?fieldManager=ketch-dashboard", text, { "Content-Type": "application/yaml" });
      }
      dirty = false;
      ta.value = dump(stripForEdit(out));
      note.textContent = `applied · rv ${out.metadata.resourceVersion}`;
      el.dataset.applied = out.metadata.resourceVersion;
      if (create) location.hash = objHref(kk, nn, out.metadata.name);
    } catch (e) { showError(e); }
  }
  function showError(e) {
    const body = e instanceof ApiError ? e.body || {} : {};
    const causes = (body.details && body.details.causes) || [];
    mount(errs, h("div", { class: "error", role: "alert" },
      h("strong", {}, body.reason ? `${body.reason}: ` : "Error: "), e.message,
      causes.length ? h("ul", { class: "causes" }, causes.map(c => {
        const line = lineOf(ta.value, c.field);
        return h("li", { class: "cause", "data-field": c.field || "" },
          h("code", {}, c.field || "(object)"), line >= 0 ? h("a", { href: "#", class: "line", onclick: (ev) => { ev.preventDefault(); selectLine(line); } }, ` line ${line + 1}`) : null,
          `: ${c.message || c.reason || ""}`);
      })) : null));
    const first = causes.map(c => lineOf(ta.value, c.field)).find(l => l >= 0);
    if (first !== undefined) selectLine(first);
  }
  function selectLine(n) {
    const lines = ta.value.split("\n");
    const start = lines.slice(0, n).join("\n").length + (n ? 1 : 0);
    ta.focus();
    ta.setSelectionRange(start, start + lines[n].length);
  }
  const el = h("div", { class: "yaml-editor" },
    h("div", { class: "toolbar" },
      h("button", { id: "yaml-apply", onclick: () => send(create ? "create" : "put") }, create ? "Create" : "Save (PUT)"),
      h("button", { id: "yaml-ssa", onclick: () => send("apply") }, "Server-side apply"),
      create ? null : h("button", { id: "yaml-reload", onclick: () => { ta.value = dump(stripForEdit(obj)); dirty = false; clear(errs); note.textContent = ""; } }, "Revert"),
      note),
    errs, ta);
  // A change from the watch refreshes the text unless the user is editing it.
  el.external = (o) => { obj = o; if (!dirty) ta.value = dump(stripForEdit(o)); else note.textContent = `edited — the object changed on the server (rv ${o.metadata.resourceVersion})`; };
  return el;
}

export async function create(root, _p, ctx) {
  const kindArg = ctx.query.get("kind") || "";
  const i = kindArg.lastIndexOf("/");
  const starter = kindArg ? { apiVersion: kindArg.slice(0, i), kind: kindArg.slice(i + 1), metadata: { name: "", namespace: nsOf(ctx) || "default" }, spec: {} } : null;
  const ed = yamlEditor(null, nsOf(ctx) || "default", starter, { create: true });
  mount(root, h("h1", {}, "Create from YAML"), ed);
}

export function eventsTable(ns, name, kind) {
  const box = h("div", { class: "events" });
  const fs = name ? `fieldSelector=${encodeURIComponent(`involvedObject.name=${name}` + (kind ? `,involvedObject.kind=${kind}` : ""))}` : "";
  const t = table([
    { title: "Type", value: e => e.type, render: e => h("span", { class: e.type === "Warning" ? "warn" : "" }, e.type || "") },
    { title: "Reason", value: e => e.reason },
    { title: "Object", value: e => `${e.involvedObject.kind}/${e.involvedObject.name}` },
    { title: "Message", value: e => e.message },
    { title: "Count", value: e => e.count || 1 },
    { title: "Last seen", value: e => e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp, render: e => age(e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp) },
  ], [], { empty: "No events." });
  t.id = name ? "object-events" : "events";
  box.appendChild(t);
  const w = liveObjects(`/api/v1${ns ? "/namespaces/" + encodeURIComponent(ns) : ""}/events`, {
    query: fs,
    onChange(items) { items.sort((a, b) => String(b.lastTimestamp || b.metadata.creationTimestamp).localeCompare(String(a.lastTimestamp || a.metadata.creationTimestamp))); t.setRows(items); },
  });
  box.stop = () => w.stop();
  return box;
}

export async function events(root, _p, ctx) {
  const e = eventsTable(nsOf(ctx));
  mount(root, h("h1", {}, "Events"), e);
  return () => e.stop();
}

// Search: every listable kind, names containing the query, in the current namespace (one list per kind).
export async function search(root, _p, ctx) {
  const q = (ctx.query.get("q") || "").toLowerCase();
  document.getElementById("search").value = q;
  const ns = nsOf(ctx);
  const ks = (await kinds()).filter(k => k.verbs.includes("list") && !["events", "componentstatuses"].includes(k.plural));
  const hits = [];
  await Promise.all(ks.map(async k => {
    try {
      const lst = await get(resPath(k, k.namespaced ? ns : "") + "?limit=500", TABLE);
      for (const r of lst.rows || []) {
        const m = r.object.metadata;
        if (m.name.toLowerCase().includes(q)) hits.push({ k, m });
      }
    } catch { /* kinds without list permission */ }
  }));
  hits.sort((a, b) => a.m.name.localeCompare(b.m.name));
  mount(root, h("h1", {}, `Search: ${q}`), table([
    { title: "Name", value: x => x.m.name, render: x => link(objHref(x.k, x.m.namespace, x.m.name), x.m.name) },
    { title: "Kind", value: x => x.k.kind }, { title: "Namespace", value: x => x.m.namespace || "" },
    { title: "Age", value: x => x.m.creationTimestamp, render: x => age(x.m.creationTimestamp) },
  ], hits, { id: "search-results", empty: "No object matches." }));
}

export { kv };
