// A Katib Experiment from a form, as Katib's UI makes one: objective, algorithm and its settings, search
// space rows, trial budget, metrics collector, and the trial template as YAML. The form becomes one YAML
// document (the template text is placed under spec.trialTemplate as written) POSTed with Content-Type
// application/yaml, so the server parses it and Katib's admission rules answer with the field at fault.
import { h, mount, errorBox } from "../dom.js";
import { req, findKind, resPath } from "../api.js";
import { dump } from "../yaml.js";
import { nsOf } from "./resources.js";

// Setting names ketch's suggestion algorithms know (src/ketch/tuning/algorithms), with Katib UI's defaults;
// an empty value is left out of the Experiment.
const ALGORITHMS = {
  random: [["random_state", ""]],
  grid: [],
  bayesianoptimization: [["base_estimator", "GP"], ["n_initial_points", "10"], ["acq_func", "gp_hedge"], ["acq_optimizer", "auto"], ["random_state", ""]],
  tpe: [["n_EI_candidates", "24"], ["gamma", "0.25"], ["n_startup_trials", "10"], ["prior_weight", "1.0"], ["random_state", ""]],
  "multivariate-tpe": [["n_ei_candidates", "24"], ["n_startup_trials", "10"], ["random_state", ""]],
  cmaes: [["restart_strategy", "none"], ["sigma", ""], ["random_state", ""]],
  sobol: [],
  hyperband: [["r_l", ""], ["eta", "3"], ["resource_name", ""]],
};

const TEMPLATE = `primaryContainerName: training-container
trialParameters:
  - name: learningRate
    description: Learning rate for the training model
    reference: lr
trialSpec:
  apiVersion: batch/v1
  kind: Job
  spec:
    template:
      spec:
        restartPolicy: Never
        containers:
          - name: training-container
            image: python:3.11
            command:
              - python3
              - -c
              - "import sys; lr = float(sys.argv[1]); print(f'loss={(lr - 0.03) ** 2}')"
              - "\${trialParameters.learningRate}"
`;

const field = (label, input) => h("label", {}, h("span", {}, label), input);

function settingRow(name = "", value = "") {
  const n = h("input", { class: "setting-name", value: name, placeholder: "name" });
  const v = h("input", { class: "setting-value", value, placeholder: "value" });
  const row = h("div", { class: "setting-row" }, n, v, h("button", { type: "button", onclick: () => row.remove() }, "Remove"));
  row.value = () => ({ name: n.value.trim(), value: v.value.trim() });
  return row;
}

function paramRow({ name = "", type = "double", min = "", max = "", step = "", list = "" } = {}) {
  const n = h("input", { class: "param-name", value: name, placeholder: "name" });
  const t = h("select", { class: "param-type" }, ["double", "int", "discrete", "categorical"].map(x => h("option", { value: x }, x)));
  t.value = type;
  const lo = h("input", { class: "param-min", value: min, placeholder: "min", size: 6 });
  const hi = h("input", { class: "param-max", value: max, placeholder: "max", size: 6 });
  const st = h("input", { class: "param-step", value: step, placeholder: "step (optional)", size: 8 });
  const ls = h("input", { class: "param-list", value: list, placeholder: "values, comma-separated" });
  const row = h("div", { class: "param-row" }, n, t, lo, hi, st, ls, h("button", { type: "button", onclick: () => row.remove() }, "Remove"));
  const sync = () => { const listy = t.value === "discrete" || t.value === "categorical"; lo.hidden = hi.hidden = st.hidden = listy; ls.hidden = !listy; };
  t.addEventListener("change", sync); sync();
  row.value = () => {
    const p = { name: n.value.trim(), parameterType: t.value, feasibleSpace: {} };
    if (t.value === "discrete" || t.value === "categorical") p.feasibleSpace.list = ls.value.split(",").map(x => x.trim()).filter(Boolean);
    else {
      p.feasibleSpace.min = lo.value.trim(); p.feasibleSpace.max = hi.value.trim();
      if (st.value.trim()) p.feasibleSpace.step = st.value.trim();
    }
    return p;
  };
  return row;
}

const indent = (text, pad) => text.replace(/\s+$/, "").split("\n").map(l => (l ? pad + l : l)).join("\n");

export async function newExperiment(root, _p, ctx) {
  const k = await findKind("kubeflow.org", "experiments");
  if (!k) { mount(root, h("h1", {}, "New experiment"), h("p", { class: "muted" }, "Katib's Experiment kind is not served by this ketch.")); return; }
  const ns = nsOf(ctx) || "default";
  const name = h("input", { id: "exp-name", required: true, placeholder: "my-experiment" });
  const otype = h("select", { id: "exp-objective-type" }, h("option", { value: "minimize" }, "minimize"), h("option", { value: "maximize" }, "maximize"));
  const metric = h("input", { id: "exp-metric", value: "loss" });
  const goal = h("input", { id: "exp-goal", placeholder: "optional", size: 8 });
  const extra = h("input", { id: "exp-extra-metrics", placeholder: "comma-separated, optional" });
  const algo = h("select", { id: "exp-algorithm" }, Object.keys(ALGORITHMS).map(a => h("option", { value: a }, a)));
  const settings = h("div", { id: "exp-settings" });
  const fillSettings = () => mount(settings, ALGORITHMS[algo.value].map(([n, v]) => settingRow(n, v)));
  algo.addEventListener("change", fillSettings); fillSettings();
  const params = h("div", { id: "exp-params" }, paramRow({ name: "lr", type: "double", min: "0.01", max: "0.1" }));
  const maxT = h("input", { id: "exp-max-trials", type: "number", min: 1, value: 12, size: 5 });
  const par = h("input", { id: "exp-parallel-trials", type: "number", min: 1, value: 3, size: 5 });
  const maxF = h("input", { id: "exp-max-failed", type: "number", min: 0, value: 3, size: 5 });
  const collector = h("select", { id: "exp-collector" }, ["StdOut", "File", "Push"].map(c => h("option", { value: c }, c)));
  const filePath = h("input", { id: "exp-collector-path", placeholder: "/var/log/katib/metrics.log", hidden: true });
  collector.addEventListener("change", () => { filePath.hidden = collector.value !== "File"; });
  const template = h("textarea", { id: "exp-trial-template", class: "yaml", spellcheck: "false" });
  template.value = TEMPLATE;
  const preview = h("pre", { id: "exp-preview", class: "log", hidden: true });
  const out = h("div", { id: "exp-result" });

  function build() {
    const spec = {
      objective: { type: otype.value, objectiveMetricName: metric.value.trim() },
      algorithm: { algorithmName: algo.value },
      parallelTrialCount: Number(par.value), maxTrialCount: Number(maxT.value), maxFailedTrialCount: Number(maxF.value),
      metricsCollectorSpec: { collector: { kind: collector.value } },
      parameters: [...params.children].map(r => r.value()),
    };
    if (goal.value.trim() !== "") spec.objective.goal = Number(goal.value);
    const more = extra.value.split(",").map(x => x.trim()).filter(Boolean);
    if (more.length) spec.objective.additionalMetricNames = more;
    const sets = [...settings.children].map(r => r.value()).filter(s => s.name && s.value !== "");
    if (sets.length) spec.algorithm.algorithmSettings = sets;
    if (collector.value === "File" && filePath.value.trim()) {
      spec.metricsCollectorSpec.source = { fileSystemPath: { path: filePath.value.trim(), kind: "File" } };
    }
    // spec is the last key, so the template can follow it as spec.trialTemplate, indented as written.
    const head = dump({ apiVersion: k.gv, kind: "Experiment", metadata: { name: name.value.trim(), namespace: ns }, spec });
    return `${head}\n  trialTemplate:\n${indent(template.value, "    ")}\n`;
  }
  const form = h("form", { class: "form wide", id: "experiment-form" },
    h("div", { class: "row" }, field("Name", name), field("Namespace", h("input", { value: ns, disabled: true }))),
    h("fieldset", {}, h("legend", {}, "Objective"), h("div", { class: "row" }, field("Type", otype), field("Metric", metric), field("Goal", goal), field("Additional metrics", extra))),
    h("fieldset", {}, h("legend", {}, "Algorithm"), field("Name", algo), settings, h("button", { type: "button", id: "exp-add-setting", onclick: () => settings.appendChild(settingRow()) }, "Add setting")),
    h("fieldset", {}, h("legend", {}, "Trial thresholds"), h("div", { class: "row" }, field("Max trials", maxT), field("Parallel trials", par), field("Max failed trials", maxF))),
    h("fieldset", {}, h("legend", {}, "Hyperparameters"), params, h("button", { type: "button", id: "exp-add-param", onclick: () => params.appendChild(paramRow()) }, "Add parameter")),
    h("fieldset", {}, h("legend", {}, "Metrics collector"), h("div", { class: "row" }, field("Kind", collector), filePath)),
    h("fieldset", {}, h("legend", {}, "Trial template (YAML: primaryContainerName, trialParameters, trialSpec)"), template),
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "exp-show-yaml", onclick: () => { preview.textContent = build(); preview.hidden = false; } }, "Show YAML"),
      h("button", { type: "submit", id: "exp-create" }, "Create"), h("a", { href: "#/tuning" }, "Cancel")),
    out, preview);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    mount(out);
    try {
      await req("POST", resPath(k, ns), build(), { "Content-Type": "application/yaml" });
      ctx.go(`#/tuning/${encodeURIComponent(ns)}/${encodeURIComponent(name.value.trim())}`);
    } catch (err) {
      const causes = ((err.body || {}).details || {}).causes || [];
      mount(out, errorBox(err), causes.length ? h("ul", { class: "causes" }, causes.map(c => h("li", {}, `${c.field || ""}: ${c.message || ""}`))) : null);
    }
  });
  mount(root, h("h1", {}, "New experiment"), form);
}
