// Monitoring: ketch's own /metrics (the series docs/monitoring.md lists) sampled every few seconds while
// the tab is visible and plotted over the last 10 minutes, so no Prometheus or Grafana is needed for a
// look: API request rate and mean latency by verb, per-model request rate and latency through the
// gateway, work queue depth per controller, and drift p-values.
import { h, mount } from "../dom.js";
import { lineChart } from "../charts.js";

// Prometheus text format -> {name: [{labels, value}]}
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    (out[m[1]] ||= []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

// The sum of a metric's samples grouped by the given label names -> {key: value}
function sumBy(metrics, name, keys) {
  const out = {};
  for (const s of metrics[name] || []) {
    const k = keys.map(x => s.labels[x] ?? "").join("/");
    out[k] = (out[k] || 0) + s.value;
  }
  return out;
}

const SERIES = 6; // most lines per chart

export async function page(root) {
  const box = h("div", { id: "monitoring-charts", class: "charts" }, h("p", { class: "muted" }, "waiting for the first samples…"));
  mount(root, h("h1", {}, "Monitoring"),
    h("p", { class: "muted" }, "ketch's /metrics, sampled every 2 s in this tab. For Prometheus and Grafana see docs/monitoring.md."), box);
  const samples = [];
  let timer = null, stopped = false;
  async function sample() {
    if (stopped) return;
    if (document.visibilityState === "visible") {
      try {
        const r = await fetch("/metrics");
        if (r.ok) {
          const m = parseMetrics(await r.text());
          samples.push({
            t: Date.now() / 1000,
            apiCount: sumBy(m, "apiserver_request_duration_seconds_count", ["verb"]),
            apiSum: sumBy(m, "apiserver_request_duration_seconds_sum", ["verb"]),
            modelCount: sumBy(m, "revision_request_latencies_seconds_count", ["namespace", "inferenceservice"]),
            modelSum: sumBy(m, "revision_request_latencies_seconds_sum", ["namespace", "inferenceservice"]),
            depth: sumBy(m, "workqueue_depth", ["name"]),
            drift: sumBy(m, "ketch_drift_p_value", ["namespace", "detector"]),
          });
          while (samples.length > 300) samples.shift();
          draw();
        }
      } catch { /* ketch restarting: next tick */ }
    }
    if (!stopped) timer = setTimeout(sample, samples.length < 3 ? 1000 : 2000);
  }
  // rate and mean latency per interval from cumulative count/sum pairs
  function rates(countKey, sumKey) {
    const rate = {}, lat = {};
    const t0 = samples[0].t;
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i], dt = b.t - a.t;
      for (const k of Object.keys(b[countKey])) {
        const dn = b[countKey][k] - (a[countKey][k] || 0), ds = b[sumKey][k] - (a[sumKey][k] || 0);
        (rate[k] ||= []).push([b.t - t0, dn / dt]);
        if (dn > 0) (lat[k] ||= []).push([b.t - t0, (1000 * ds) / dn]);
      }
    }
    return [rate, lat];
  }
  const top = (series) => Object.entries(series).map(([name, points]) => ({ name: name || "(none)", points }))
    .sort((x, y) => y.points.reduce((s, p) => s + p[1], 0) - x.points.reduce((s, p) => s + p[1], 0)).slice(0, SERIES);
  function chart(title, id, series, yLabel) {
    return h("figure", {}, h("figcaption", {}, title, series.length ? h("span", { class: "muted" }, ` (${series.map(x => x.name).join(", ")})`) : null),
      series.length ? lineChart(series, { width: 420, height: 220, xLabel: "seconds", yLabel, id, dots: false }) : h("p", { class: "muted", id }, "nothing yet"));
  }
  function draw() {
    if (samples.length < 2) return;
    const t0 = samples[0].t;
    const [apiRate, apiLat] = rates("apiCount", "apiSum");
    const [modelRate, modelLat] = rates("modelCount", "modelSum");
    const gauge = (key) => {
      const out = {};
      for (const s of samples) for (const [k, v] of Object.entries(s[key])) (out[k] ||= []).push([s.t - t0, v]);
      return out;
    };
    mount(box,
      chart("API requests / s by verb", "api-rate-chart", top(apiRate), "req/s"),
      chart("API mean latency by verb (ms)", "api-latency-chart", top(apiLat), "ms"),
      chart("model requests / s (gateway)", "model-rate-chart", top(modelRate), "req/s"),
      chart("model mean latency (ms, gateway)", "model-latency-chart", top(modelLat), "ms"),
      chart("work queue depth by controller (queues that held keys)", "workqueue-chart",
        top(gauge("depth")).filter(x => x.points.some(p => p[1] > 0)), "keys"),
      Object.keys(samples[samples.length - 1].drift).length ? chart("drift p-value by detector", "drift-chart", top(gauge("drift")), "p") : null);
  }
  sample();
  return () => { stopped = true; clearTimeout(timer); };
}
