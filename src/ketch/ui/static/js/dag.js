// Layered DAG layout in SVG: layers by longest path from the roots, order within a layer by the
// average position of parents (one barycentre sweep), edges as cubic curves. A layer wider than
// MAX_ROW nodes wraps onto further rows (a 20-wide ParallelFor stays one screen wide), and artifact
// nodes (kind "artifact", as KFP's UI draws them between producer and consumer) are small pills.
import { s } from "./dom.js";

const MAX_ROW = 8;

// nodes: [{id, label, state, kind?, type?}], edges: [[from, to]]
export function layout(nodes, edges) {
  const parents = new Map(nodes.map(n => [n.id, []]));
  for (const [a, b] of edges) if (parents.has(b) && parents.has(a)) parents.get(b).push(a);
  const layer = new Map();
  const depth = (id, seen = new Set()) => {
    if (layer.has(id)) return layer.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    let d = 0;
    for (const p of parents.get(id)) d = Math.max(d, depth(p, seen) + 1);
    layer.set(id, d);
    return d;
  };
  nodes.forEach(n => depth(n.id));
  const layers = [];
  for (const n of nodes) (layers[layer.get(n.id)] ||= []).push(n);
  for (let i = 0; i < layers.length; i++) layers[i] ||= [];
  // ord: a node's index in its layer before wrapping (what the barycentre sweep orders by, so a
  // child lands in the same row and column as its parent); pos: its column offset in its row.
  const ord = new Map(), pos = new Map(), row = new Map();
  layers.forEach((L, li) => {
    if (li > 0) {
      const bc = (n) => { const ps = parents.get(n.id).map(p => ord.get(p)).filter(x => x !== undefined); return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : 0; };
      const key = new Map(L.map(n => [n.id, bc(n)]));
      L.sort((a, b) => key.get(a.id) - key.get(b.id));
    }
    // wrap: row r of the layer holds nodes r*MAX_ROW .. r*MAX_ROW+MAX_ROW-1, each row centred
    L.forEach((n, i) => {
      const r = Math.floor(i / MAX_ROW), inRow = Math.min(MAX_ROW, L.length - r * MAX_ROW);
      row.set(n.id, r);
      ord.set(n.id, i);
      pos.set(n.id, (i % MAX_ROW) - (inRow - 1) / 2);
    });
  });
  return { layers, layer, pos, row };
}

export function dagSvg(nodes, edges, { onSelect, selected } = {}) {
  const W = 150, H = 30, AW = 132, AH = 20, GX = 18, GY = 40, RY = 12;
  const { layers, layer, pos, row } = layout(nodes, edges);
  const byId = new Map(nodes.map(n => [n.id, n]));
  const isArt = (id) => (byId.get(id) || {}).kind === "artifact";
  const widest = Math.max(1, ...layers.map(l => Math.min(MAX_ROW, l.length)));
  // a layer's height: its rows of the tallest node kind it holds
  const top = [];
  let y = GY / 2;
  layers.forEach((L, li) => {
    top[li] = y;
    const rows = Math.max(1, Math.ceil(L.length / MAX_ROW));
    const hh = L.some(n => n.kind !== "artifact") ? H : AH;
    y += rows * (hh + RY) - RY + GY;
  });
  const width = widest * (W + GX) + GX, height = Math.max(y - GY / 2, H + GY);
  const nh = (id) => (isArt(id) ? AH : H), nw = (id) => (isArt(id) ? AW : W);
  const cx = (id) => width / 2 + pos.get(id) * (W + GX);
  const rowH = (li) => (layers[li].some(n => n.kind !== "artifact") ? H : AH) + RY;
  const cy = (id) => top[layer.get(id)] + row.get(id) * rowH(layer.get(id));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "dag", id: "dag" });
  for (const [a, b] of edges) {
    if (!layer.has(a) || !layer.has(b)) continue;
    const x1 = cx(a), y1 = cy(a) + nh(a), x2 = cx(b), y2 = cy(b), m = Math.max(12, (y2 - y1) / 2);
    svg.appendChild(s("path", { d: `M${x1},${y1} C${x1},${y1 + m} ${x2},${y2 - m} ${x2},${y2}`, class: "edge", "data-from": a, "data-to": b }));
  }
  for (const n of nodes) {
    const sel = () => onSelect && onSelect(n.id, n);
    if (n.kind === "artifact") {
      const type = String(n.type || "system.Artifact").replace(/^system\./, "");
      const short = type.replace("Classification", "Class.").replace("SlicedClass.", "Sliced");
      const label = n.label.length > 12 ? n.label.slice(0, 11) + "…" : n.label;
      svg.appendChild(s("g", { class: ["artifact-node", selected === n.id ? "selected" : ""], "data-artifact": n.id, "data-type": type, transform: `translate(${cx(n.id) - AW / 2},${cy(n.id)})`, onclick: sel },
        s("rect", { width: AW, height: AH, rx: AH / 2 }),
        s("text", { x: 10, y: AH / 2 + 4 }, label, s("tspan", { class: "atype" }, ` ${short.slice(0, 13)}`)),
        s("title", {}, `${n.label} (${type})`)));
      continue;
    }
    const st = String(n.state || "PENDING").toUpperCase();
    const g = s("g", { class: ["node", `st-${st}`, selected === n.id ? "selected" : ""], "data-task": n.id, "data-state": st, transform: `translate(${cx(n.id) - W / 2},${cy(n.id)})`, onclick: sel },
      s("rect", { width: nw(n.id), height: H, rx: 6 }),
      s("circle", { cx: 13, cy: H / 2, r: 5, class: "dot" }),
      s("text", { x: 24, y: H / 2 + 4 }, n.label.length > 19 ? n.label.slice(0, 18) + "…" : n.label),
      s("title", {}, `${n.label}: ${st}`));
    svg.appendChild(g);
  }
  return svg;
}
