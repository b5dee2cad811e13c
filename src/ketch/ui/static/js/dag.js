// Layered DAG layout in SVG: layers by longest path from the roots, order within a layer by the
// average position of parents (one barycentre sweep), edges as cubic curves.
import { s } from "./dom.js";

// nodes: [{id, label, state}], edges: [[from, to]]
export function layout(nodes, edges) {
  const parents = new Map(nodes.map(n => [n.id, []]));
  for (const [a, b] of edges) if (parents.has(b) && parents.has(a)) parents.get(b).push(a);
  const layer = new Map();
  const depth = (id, seen = new Set()) => {
    if (layer.has(id)) return layer.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const d = Math.max(-1, ...parents.get(id).map(p => depth(p, seen))) + 1;
    layer.set(id, d);
    return d;
  };
  nodes.forEach(n => depth(n.id));
  const layers = [];
  for (const n of nodes) (layers[layer.get(n.id)] ||= []).push(n);
  const pos = new Map();
  layers.forEach((L, li) => {
    if (li > 0) {
      const bc = (n) => { const ps = parents.get(n.id).map(p => pos.get(p)).filter(x => x !== undefined); return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : 0; };
      L.sort((a, b) => bc(a) - bc(b));
    }
    L.forEach((n, i) => pos.set(n.id, i - (L.length - 1) / 2));
  });
  return { layers, layer, pos };
}

export function dagSvg(nodes, edges, { onSelect, selected } = {}) {
  const W = 170, H = 34, GX = 30, GY = 56;
  const { layers, layer, pos } = layout(nodes, edges);
  const widest = Math.max(1, ...layers.map(l => l.length));
  const width = widest * (W + GX) + GX, height = layers.length * (H + GY) + GY / 2;
  const cx = (id) => width / 2 + pos.get(id) * (W + GX);
  const cy = (id) => GY / 2 + layer.get(id) * (H + GY);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "dag", id: "dag" });
  for (const [a, b] of edges) {
    if (!layer.has(a) || !layer.has(b)) continue;
    const x1 = cx(a), y1 = cy(a) + H, x2 = cx(b), y2 = cy(b);
    svg.appendChild(s("path", { d: `M${x1},${y1} C${x1},${y1 + GY / 2} ${x2},${y2 - GY / 2} ${x2},${y2}`, class: "edge" }));
  }
  for (const n of nodes) {
    const st = String(n.state || "PENDING").toUpperCase();
    const g = s("g", { class: ["node", `st-${st}`, selected === n.id ? "selected" : ""], "data-task": n.id, "data-state": st, transform: `translate(${cx(n.id) - W / 2},${cy(n.id)})`, onclick: () => onSelect && onSelect(n.id) },
      s("rect", { width: W, height: H, rx: 6 }),
      s("circle", { cx: 14, cy: H / 2, r: 5, class: "dot" }),
      s("text", { x: 26, y: H / 2 + 4 }, n.label.length > 22 ? n.label.slice(0, 21) + "…" : n.label),
      s("title", {}, `${n.label}: ${st}`));
    svg.appendChild(g);
  }
  return svg;
}
