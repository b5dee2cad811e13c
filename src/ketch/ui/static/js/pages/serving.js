// Serving: KServe InferenceServices with URL, readiness, revisions, the traffic split and a form that sends
// a test prediction through ketch's own gateway (never to another host).
import { h, mount, clear, table, badge, age, link, errorBox } from "../dom.js";
import { findKind, resPath, liveObjects, req } from "../api.js";
import { nsOf, objectPage, inWhere } from "./resources.js";
import { barChart, lineChart } from "../charts.js";

const ready = (o) => { const c = ((o.status && o.status.conditions) || []).find(x => x.type === "Ready"); return c ? (c.status === "True" ? "Ready" : c.reason || "NotReady") : "Unknown"; };

export async function list(root, _p, ctx) {
  const k = await findKind("serving.kserve.io", "inferenceservices");
  if (!k) { mount(root, h("h1", {}, "Models"), h("p", { class: "muted" }, "KServe's InferenceService kind is not served by this ketch yet.")); return; }
  const t = table([
    { title: "Name", value: o => o.metadata.name, render: o => link(`#/models/${o.metadata.namespace}/${encodeURIComponent(o.metadata.name)}`, o.metadata.name) },
    { title: "Namespace", value: o => o.metadata.namespace },
    { title: "Ready", value: ready, render: o => badge(ready(o)) },
    { title: "URL", value: o => (o.status || {}).url || "" },
    { title: "Format", value: o => ((((o.spec || {}).predictor || {}).model || {}).modelFormat || {}).name || "" },
    { title: "Age", value: o => o.metadata.creationTimestamp, render: o => age(o.metadata.creationTimestamp) },
  ], [], { id: "inferenceservices", empty: `No InferenceServices ${inWhere(ctx)}.` });
  const w = liveObjects(resPath(k, nsOf(ctx)), { onChange: items => t.setRows(items) });
  mount(root, h("h1", {}, "Models"), h("div", { class: "toolbar" }, link(`#/create?kind=${encodeURIComponent(k.gv + "/InferenceService")}`, "New InferenceService")), t);
  return () => w.stop();
}

// The path on this host that reaches the model: status.url's path when it points here, else the gateway's.
export function predictBase(o) {
  const url = (o.status || {}).url;
  if (url) {
    try { const u = new URL(url, location.href); if (u.host === location.host) return u.pathname.replace(/\/$/, ""); } catch { /* not a URL */ }
  }
  return `/serving/${encodeURIComponent(o.metadata.namespace)}/${encodeURIComponent(o.metadata.name)}`;
}

export async function details(root, p, ctx) {
  const k = await findKind("serving.kserve.io", "inferenceservices");
  if (!k) throw new Error("KServe's InferenceService kind is not served");
  const info = h("div", { id: "isvc-info" });
  const form = predictForm();
  let current = null;
  const objBox = h("div");
  const stop = objectPage(objBox, k, p.ns, p.name, ctx, {
    extra(box, o) {
      current = o;
      const st = o.status || {};
      const pred = ((st.components || {}).predictor) || {};
      const traffic = pred.traffic || [];
      mount(info, h("p", {}, badge(ready(o)), " ", h("code", { id: "isvc-url" }, st.url || "(no URL yet)")),
        h("h2", {}, "Revisions and traffic"), table([
          { title: "Revision", value: t => t.revisionName || (t.latestRevision ? pred.latestCreatedRevision || "latest" : "") },
          { title: "Tag", value: t => t.tag || "" },
          { title: "Latest", value: t => (t.latestRevision ? "yes" : "") },
          { title: "Percent", value: t => t.percent ?? "" },
        ], traffic, { id: "traffic", empty: `latest ready ${pred.latestReadyRevision || "—"}, created ${pred.latestCreatedRevision || "—"}` }),
        traffic.length ? barChart(traffic.map(t => ({ label: t.tag || t.revisionName || "latest", value: t.percent || 0 })), { width: 360, height: 180, id: "traffic-chart" }) : null,
        (st.canaryStatuses || []).length ? table([{ title: "Canary", value: c => c.name }, { title: "Ready", value: c => String(c.ready) }, { title: "Traffic", value: c => c.trafficPercent }], st.canaryStatuses) : null);
      if (!box.firstChild) mount(box, info, h("h2", {}, "Test prediction"), form, h("h2", {}, "Requests"), metricsBox);
    },
  });
  function predictForm() {
    const body = h("textarea", { id: "predict-body", class: "json", rows: 6 }, '{"instances": [[6.8, 2.8, 4.8, 1.4]]}');
    const proto = h("select", { id: "predict-protocol" }, h("option", { value: "v1" }, "v1 (:predict)"), h("option", { value: "v2" }, "v2 (/infer)"));
    const out = h("pre", { id: "predict-result", class: "log" });
    const send = async (ev) => {
      ev.preventDefault();
      clear(out);
      if (!current) return;
      let payload;
      try { payload = JSON.parse(body.value); } catch (e) { out.appendChild(errorBox(`request body is not JSON: ${e.message}`)); return; }
      const base = predictBase(current);
      const model = current.metadata.name;
      const url = proto.value === "v1" ? `${base}/v1/models/${encodeURIComponent(model)}:predict` : `${base}/v2/models/${encodeURIComponent(model)}/infer`;
      const t0 = performance.now();
      try {
        const r = await req("POST", url, payload);
        out.textContent = `${JSON.stringify(r, null, 2)}\n\n(${(performance.now() - t0).toFixed(1)} ms, POST ${url})`;
      } catch (e) { out.appendChild(errorBox(`${e.message} (POST ${url})`)); }
    };
    return h("form", { class: "form", onsubmit: send }, proto, body, h("button", { type: "submit", id: "predict-send" }, "Send"), out);
  }
  // Request metrics over time: the model server's Prometheus text through the gateway, sampled every 5 s
  // while the tab is visible (one small request, not a storm), kept for the last 10 minutes.
  const metricsBox = h("div", { id: "isvc-metrics" }, h("p", { class: "muted" }, "waiting for the first samples…"));
  const samples = [];
  let timer = null, stopped = false;
  async function sample() {
    if (stopped) return;
    if (current && ready(current) === "Ready" && document.visibilityState === "visible") {
      try {
        const r = await fetch(`${predictBase(current)}/metrics`);
        if (r.ok) {
          samples.push({ t: Date.now() / 1000, ...parseProm(await r.text()) });
          while (samples.length > 120) samples.shift();
          drawMetrics();
        }
      } catch { /* the model is restarting; try again next tick */ }
    }
    if (!stopped) timer = setTimeout(sample, samples.length < 2 ? 1000 : 5000);
  }
  function drawMetrics() {
    const t0 = samples[0].t;
    const count = samples.map(x => [x.t - t0, x.count]);
    const lat = [];
    for (let i = 1; i < samples.length; i++) {
      const dn = samples[i].count - samples[i - 1].count, ds = samples[i].sum - samples[i - 1].sum;
      if (dn > 0) lat.push([samples[i].t - t0, (1000 * ds) / dn]);
    }
    mount(metricsBox, h("div", { class: "charts" },
      h("figure", {}, h("figcaption", {}, `requests answered (total ${samples[samples.length - 1].count})`), lineChart([{ name: "requests", points: count }], { width: 360, height: 200, xLabel: "seconds", id: "requests-chart" })),
      lat.length ? h("figure", {}, h("figcaption", {}, "mean latency per interval (ms)"), lineChart([{ name: "ms", points: lat }], { width: 360, height: 200, xLabel: "seconds", id: "latency-chart" })) : null));
  }
  sample();
  mount(root, objBox);
  return () => { stopped = true; clearTimeout(timer); stop(); };
}

// The totals of ketch_model_requests and ketch_model_request_duration_seconds across labels.
export function parseProm(text) {
  let count = 0, sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = line.match(/^(\w+)(\{[^}]*\})?\s+([0-9.eE+-]+)/);
    if (!m) continue;
    if (m[1] === "ketch_model_requests_total") count += Number(m[3]);
    else if (m[1] === "ketch_model_request_duration_seconds_sum") sum += Number(m[3]);
  }
  return { count, sum };
}
