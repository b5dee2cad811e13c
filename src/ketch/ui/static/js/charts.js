// Small SVG charts written for the dashboard: line/scatter, confusion matrix, ROC, parallel coordinates.
import { s, h } from "./dom.js";

const fmt = (v) => (typeof v === "number" ? (Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(3)) : String(v));
function scale(d0, d1, r0, r1) {
  if (d0 === d1) { d0 -= 1; d1 += 1; }
  return (v) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0);
}
function ext(vals) { const xs = vals.filter(v => typeof v === "number" && isFinite(v)); return xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1]; }

// series: [{name, points: [[x, y], ...]}]
export function lineChart(series, { width = 520, height = 260, xLabel = "", yLabel = "", dots = true, id } = {}) {
  const m = { l: 50, r: 12, t: 12, b: 36 };
  const all = series.flatMap(se => se.points);
  const [x0, x1] = ext(all.map(p => p[0])), [y0, y1] = ext(all.map(p => p[1]));
  const X = scale(x0, x1, m.l, width - m.r), Y = scale(y0, y1, height - m.b, m.t);
  const colors = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#4a5568"];
  return s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", id, role: "img" },
    axes(m, width, height, [x0, x1], [y0, y1], xLabel, yLabel),
    series.map((se, i) => [
      s("polyline", { points: se.points.map(p => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none", stroke: colors[i % colors.length], "stroke-width": 1.5 }),
      dots ? se.points.map(p => s("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: colors[i % colors.length] }, s("title", {}, `${se.name}: ${fmt(p[0])}, ${fmt(p[1])}`))) : null,
      series.length > 1 ? s("text", { x: width - m.r - 4, y: m.t + 12 + i * 14, "text-anchor": "end", fill: colors[i % colors.length], class: "legend" }, se.name) : null,
    ]));
}

function axes(m, width, height, [x0, x1], [y0, y1], xLabel, yLabel, xTicks = true) {
  return [
    s("line", { x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b, class: "axis" }),
    s("line", { x1: m.l, y1: m.t, x2: m.l, y2: height - m.b, class: "axis" }),
    xTicks ? s("text", { x: m.l, y: height - m.b + 14, class: "tick" }, fmt(x0)) : null,
    xTicks ? s("text", { x: width - m.r, y: height - m.b + 14, class: "tick", "text-anchor": "end" }, fmt(x1)) : null,
    s("text", { x: m.l - 4, y: height - m.b, class: "tick", "text-anchor": "end" }, fmt(y0)),
    s("text", { x: m.l - 4, y: m.t + 8, class: "tick", "text-anchor": "end" }, fmt(y1)),
    s("text", { x: (m.l + width - m.r) / 2, y: height - 4, class: "label", "text-anchor": "middle" }, xLabel),
    s("text", { x: 12, y: (m.t + height - m.b) / 2, class: "label", "text-anchor": "middle", transform: `rotate(-90 12 ${(m.t + height - m.b) / 2})` }, yLabel),
  ];
}

export function barChart(items, { width = 520, height = 220, id } = {}) {
  // items: [{label, value}]
  const m = { l: 50, r: 10, t: 10, b: 40 };
  const [, hi] = ext(items.map(i => i.value).concat([0]));
  const Y = scale(0, hi || 1, height - m.b, m.t);
  const bw = (width - m.l - m.r) / Math.max(1, items.length);
  return s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", id },
    axes(m, width, height, [0, 0], [0, hi], "", "", false),
    items.map((it, i) => [
      s("rect", { x: m.l + i * bw + 4, y: Y(it.value), width: Math.max(1, bw - 8), height: height - m.b - Y(it.value), class: "bar" }, s("title", {}, `${it.label}: ${fmt(it.value)}`)),
      s("text", { x: m.l + i * bw + bw / 2, y: height - m.b + 14, "text-anchor": "middle", class: "tick" }, String(it.label).slice(0, 14)),
    ]));
}

// ClassificationMetrics.confusionMatrix: {annotationSpecs: [{displayName}], rows: [{row: [...]}]}
export function confusionMatrix(cm, { id = "confusion-matrix" } = {}) {
  const labels = (cm.annotationSpecs || []).map(a => a.displayName);
  const rows = (cm.rows || []).map(r => r.row || []);
  const max = Math.max(1, ...rows.flat());
  const cell = Math.max(44, 7 * Math.max(0, ...labels.map(l => String(l).length)) + 8), m = 90;
  const n = labels.length;
  const w = m + n * cell + 10, ht = m + n * cell + 10;
  return s("svg", { viewBox: `0 0 ${w} ${ht}`, width: w, height: ht, class: "chart confusion", id },
    s("text", { x: m + (n * cell) / 2, y: 14, "text-anchor": "middle", class: "label" }, "Predicted"),
    s("text", { x: 12, y: m + (n * cell) / 2, "text-anchor": "middle", class: "label", transform: `rotate(-90 12 ${m + (n * cell) / 2})` }, "Actual"),
    labels.map((l, i) => [
      s("text", { x: m + i * cell + cell / 2, y: m - 8, "text-anchor": "middle", class: "tick" }, l),
      s("text", { x: m - 6, y: m + i * cell + cell / 2 + 4, "text-anchor": "end", class: "tick" }, l),
    ]),
    rows.map((r, i) => r.map((v, j) => [
      s("rect", { x: m + j * cell, y: m + i * cell, width: cell - 2, height: cell - 2, fill: `rgba(43,108,176,${0.08 + 0.9 * v / max})` }),
      s("text", { x: m + j * cell + cell / 2, y: m + i * cell + cell / 2 + 4, "text-anchor": "middle", class: v / max > 0.5 ? "cm-hi" : "cm-lo" }, String(v)),
    ])));
}

// ClassificationMetrics.confidenceMetrics: [{confidenceThreshold, recall, falsePositiveRate}]
export function rocCurve(points) {
  const pts = points.map(p => [Number(p.falsePositiveRate ?? 0), Number(p.recall ?? 0)]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const c = lineChart([{ name: "ROC", points: [[0, 0], ...pts, [1, 1]] }], { width: 320, height: 300, xLabel: "False positive rate", yLabel: "True positive rate", id: "roc-curve" });
  c.appendChild(s("line", { x1: 50, y1: 264, x2: 308, y2: 12, class: "diag" }));
  return c;
}

const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#4a5568"];
const rocPoints = (points) => [[0, 0], ...points.map(p => [Number(p.falsePositiveRate ?? 0), Number(p.recall ?? 0)]).sort((a, b) => a[0] - b[0] || a[1] - b[1]), [1, 1]];

// Several runs' ROC curves on one plot: series [{name, points: confidenceMetrics}], one colour each.
export function rocOverlay(series, { id = "compare-roc" } = {}) {
  const c = lineChart(series.map(se => ({ name: se.name, points: rocPoints(se.points) })), { width: 420, height: 320, xLabel: "False positive rate", yLabel: "True positive rate", id, dots: false });
  c.appendChild(s("line", { x1: 50, y1: 284, x2: 408, y2: 12, class: "diag" }));
  return c;
}

// Scalar metrics across runs: one group per metric, one bar per run. Metrics differ in scale (an
// accuracy next to a row count), so each group is scaled to its own largest magnitude and every bar
// carries its value; the legend names the runs.
export function groupedBarChart(groups, names, { id = "compare-bars", height = 240 } = {}) {
  const m = { l: 12, r: 12, t: 18 + 14 * Math.ceil(names.length / 3), b: 40 };
  const gw = Math.max(24 * names.length + 16, 90), width = Math.max(360, m.l + m.r + gw * groups.length);
  const base = height - m.b, span = base - m.t - 12;
  return s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart grouped", id, role: "img" },
    s("line", { x1: m.l, y1: base, x2: width - m.r, y2: base, class: "axis" }),
    names.map((n, i) => s("text", { x: m.l + (i % 3) * 140, y: 12 + 14 * Math.floor(i / 3), fill: COLORS[i % COLORS.length], class: "legend" }, `■ ${String(n).slice(0, 20)}`)),
    groups.map((g, gi) => {
      const x0 = m.l + gi * gw + 8, bw = (gw - 16) / Math.max(1, names.length);
      const top = Math.max(...g.values.map(v => Math.abs(Number(v) || 0))) || 1;
      return [
        g.values.map((v, i) => {
          const hgt = v === undefined ? 0 : Math.max(1, (Math.abs(Number(v) || 0) / top) * span);
          return [
            s("rect", { x: x0 + i * bw + 1, y: base - hgt, width: Math.max(1, bw - 2), height: hgt, style: { fill: COLORS[i % COLORS.length] }, class: "bar", "data-run": names[i], "data-metric": g.label }, s("title", {}, `${names[i]} · ${g.label}: ${v === undefined ? "—" : fmt(v)}`)),
            v === undefined ? null : s("text", { x: x0 + i * bw + bw / 2, y: base - hgt - 3, "text-anchor": "middle", class: "tick" }, fmt(v)),
          ];
        }),
        s("text", { x: x0 + (gw - 16) / 2, y: base + 14, "text-anchor": "middle", class: "tick" }, String(g.label).slice(0, 18)),
      ];
    }));
}

// rows: [{label, values: {dim: number}, color?}]; dims: [{name, values?}] — the last dim is usually the objective.
export function parallelCoordinates(dims, rows, { width = 720, height = 300, id = "parallel-coordinates" } = {}) {
  const m = { l: 40, r: 40, t: 24, b: 24 };
  const X = (i) => m.l + (i * (width - m.l - m.r)) / Math.max(1, dims.length - 1);
  const scales = dims.map(d => {
    const vals = rows.map(r => r.values[d.name]);
    if (vals.every(v => typeof v === "number")) { const [a, b] = ext(vals); return { kind: "num", f: scale(a, b, height - m.b, m.t), a, b }; }
    const cats = [...new Set(vals.map(String))].sort();
    return { kind: "cat", f: (v) => m.t + ((cats.indexOf(String(v)) + 0.5) * (height - m.t - m.b)) / cats.length, cats };
  });
  const obj = dims.length - 1;
  const [oa, ob] = ext(rows.map(r => r.values[dims[obj].name]));
  const col = (v) => { const t = typeof v === "number" ? (v - oa) / ((ob - oa) || 1) : 0.5; return `hsl(${220 - 200 * t},70%,45%)`; };
  return s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", id },
    rows.map(r => s("polyline", {
      points: dims.map((d, i) => `${X(i)},${scales[i].f(r.values[d.name])}`).join(" "),
      fill: "none", stroke: col(r.values[dims[obj].name]), "stroke-opacity": 0.6, class: "pc-line",
    }, s("title", {}, r.label))),
    dims.map((d, i) => [
      s("line", { x1: X(i), y1: m.t, x2: X(i), y2: height - m.b, class: "axis" }),
      s("text", { x: X(i), y: 14, "text-anchor": "middle", class: "label" }, d.name),
      scales[i].kind === "num" ? [
        s("text", { x: X(i) + 3, y: height - m.b + 12, class: "tick" }, fmt(scales[i].a)),
        s("text", { x: X(i) + 3, y: m.t + 8, class: "tick" }, fmt(scales[i].b)),
      ] : scales[i].cats.map(c => s("text", { x: X(i) + 3, y: scales[i].f(c), class: "tick" }, c)),
    ]));
}

export function legendNote(text) { return h("p", { class: "muted small" }, text); }
