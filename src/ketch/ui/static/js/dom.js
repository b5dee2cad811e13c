// DOM building without innerHTML: every string a user or the API supplies becomes a text node.
const SVGNS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", Array.isArray(v) ? v.filter(Boolean).join(" ") : v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "value" || k === "checked" || k === "selected") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
export function mount(el, ...children) { clear(el); append(el, children); return el; }

// A tiny reactive cell: set() notifies subscribers; views re-render the part that depends on it.
export class Cell {
  constructor(value) { this.value = value; this.subs = new Set(); }
  get() { return this.value; }
  set(v) { this.value = v; for (const f of [...this.subs]) f(v); }
  update(fn) { this.set(fn(this.value)); }
  subscribe(f) { this.subs.add(f); return () => this.subs.delete(f); }
}

export function link(href, ...children) { return h("a", { href }, ...children); }

export function badge(state) {
  const st = String(state || "Unknown");
  const cls = /succe|ready|true|complete|running.*ok|enabled|available|bound/i.test(st) ? "ok"
    : /fail|error|false|cancel/i.test(st) ? "bad"
    : /run|pend|creat|restart|progress|paus/i.test(st) ? "busy" : "idle";
  return h("span", { class: ["badge", cls], "data-state": st }, st);
}

export function age(ts) {
  if (!ts) return "";
  const secs = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (!isFinite(secs)) return "";
  if (secs < 120) return `${Math.floor(secs)}s`;
  if (secs < 7200) return `${Math.floor(secs / 60)}m`;
  if (secs < 172800) return `${Math.floor(secs / 3600)}h`;
  return `${Math.floor(secs / 86400)}d`;
}

export function duration(a, b) {
  if (!a) return "";
  const end = b && !String(b).startsWith("1970") ? new Date(b) : new Date();
  const secs = Math.max(0, (end - new Date(a)) / 1000);
  if (!isFinite(secs)) return "";
  const m = Math.floor(secs / 60), sec = Math.floor(secs % 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${m % 60}m` : m ? `${m}m${sec}s` : `${sec}s`;
}

// A table whose columns can be sorted by clicking the header.
export function table(columns, rows, { sortable = true, onRow, id, empty = "Nothing here yet." } = {}) {
  let sortCol = -1, dir = 1;
  const tbody = h("tbody");
  const heads = columns.map((c, i) => h("th", {
    class: sortable ? "sortable" : "",
    onclick: sortable ? () => { dir = sortCol === i ? -dir : 1; sortCol = i; draw(); } : null,
  }, c.title));
  function cellValue(r, c) { return c.sort ? c.sort(r) : c.value ? c.value(r) : ""; }
  function draw() {
    let rs = rows.slice();
    if (sortCol >= 0) {
      const c = columns[sortCol];
      rs.sort((a, b) => {
        const x = cellValue(a, c), y = cellValue(b, c);
        const nx = Number(x), ny = Number(y);
        if (x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny)) return (nx - ny) * dir;
        return String(x ?? "").localeCompare(String(y ?? "")) * dir;
      });
      heads.forEach((th, i) => th.setAttribute("aria-sort", i === sortCol ? (dir > 0 ? "ascending" : "descending") : "none"));
    }
    clear(tbody);
    if (!rs.length) tbody.appendChild(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
    for (const r of rs) {
      tbody.appendChild(h("tr", { onclick: onRow ? () => onRow(r) : null, class: onRow ? "clickable" : "" },
        columns.map(c => h("td", {}, c.render ? c.render(r) : String(cellValue(r, c) ?? "")))));
    }
  }
  draw();
  const el = h("table", { class: "grid", id }, h("thead", {}, h("tr", {}, heads)), tbody);
  el.setRows = (r) => { rows = r; draw(); };
  return el;
}

export function errorBox(err) {
  const msg = err && err.message ? err.message : String(err);
  return h("div", { class: "error", role: "alert" }, msg);
}

export function kv(obj) {
  const rows = Object.entries(obj || {});
  if (!rows.length) return h("p", { class: "muted" }, "none");
  return h("table", { class: "kv" }, h("tbody", {}, rows.map(([k, v]) =>
    h("tr", {}, h("th", {}, k), h("td", {}, typeof v === "object" && v !== null && !(v instanceof Node) ? JSON.stringify(v) : v)))));
}

// Coalesce redraws: a burst of watch events (500 trials finishing) draws once per animation frame.
export function batched(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}
