// Kubeflow's Jupyter and Volumes web apps: the notebooks list (start, stop, delete, connect), the spawner
// form (image from /ui/notebooks/config, CPU/memory/GPUs, workspace and data volumes, PodDefaults as
// "configurations") and the PVCs of a namespace with the notebooks using each. One watch per page (the
// main list); what a page only needs once (PodDefaults, PVCs for the form) is read once.
import { h, mount, table, badge, age, errorBox } from "../dom.js";
import { get, req, findKind, resPath, liveObjects } from "../api.js";
import { nsOf, inWhere, objHref } from "./resources.js";

const STOPPED = "kubeflow-resource-stopped";
const MERGE = { "Content-Type": "application/merge-patch+json" };
const PVC = { group: "", version: "v1", plural: "persistentvolumeclaims", namespaced: true };

export function nbState(nb) {
  if (((nb.metadata || {}).annotations || {})[STOPPED]) return (nb.status || {}).readyReplicas ? "Stopping" : "Stopped";
  return (nb.status || {}).readyReplicas ? "Running" : "Starting";
}
const connectHref = (nb) => `/notebook/${nb.metadata.namespace}/${nb.metadata.name}/lab`;
const nbImage = (nb) => ((((nb.spec || {}).template || {}).spec || {}).containers || [{}])[0].image || "";
function nbClaims(nb) {
  return ((((nb.spec || {}).template || {}).spec || {}).volumes || []).map(v => v.persistentVolumeClaim && v.persistentVolumeClaim.claimName).filter(Boolean);
}
// A namespace to create in: the chosen one, or "default" under "All namespaces".
const targetNs = (ctx) => nsOf(ctx) || "default";

function act(label, cls, fn, box) {
  return h("button", { type: "button", class: cls, onclick: async (e) => {
    e.stopPropagation();
    try { await fn(); } catch (err) { box.prepend(errorBox(err)); }
  } }, label);
}

export async function list(root, _p, ctx) {
  const k = await findKind("kubeflow.org", "notebooks");
  if (!k) { mount(root, h("h1", {}, "Notebooks"), h("p", { class: "muted" }, "The Notebook kind (kubeflow.org) is not served by this ketch.")); return; }
  const msgs = h("div");
  const path = (nb, sub) => resPath(k, nb.metadata.namespace, nb.metadata.name, sub);
  const t = table([
    { title: "Status", value: nbState, render: nb => badge(nbState(nb)) },
    { title: "Name", value: nb => nb.metadata.name, render: nb => h("a", { href: objHref(k, nb.metadata.namespace, nb.metadata.name) }, nb.metadata.name) },
    { title: "Namespace", value: nb => nb.metadata.namespace },
    { title: "Image", value: nbImage },
    { title: "Volumes", value: nb => nbClaims(nb).join(", ") },
    { title: "Age", value: nb => nb.metadata.creationTimestamp, render: nb => age(nb.metadata.creationTimestamp) },
    { title: "", value: () => "", render: nb => h("span", { class: "actions" },
      h("a", { class: ["nb-connect", nbState(nb) === "Running" ? "" : "disabled"], href: connectHref(nb), target: "_blank", rel: "noopener",
        "aria-disabled": nbState(nb) === "Running" ? null : "true" }, "Connect"),
      nbState(nb) === "Stopped" || nbState(nb) === "Stopping"
        ? act("Start", "nb-start", () => req("PATCH", path(nb), { metadata: { annotations: { [STOPPED]: null } } }, MERGE), msgs)
        : act("Stop", "nb-stop", () => req("PATCH", path(nb), { metadata: { annotations: { [STOPPED]: new Date().toISOString().replace(/\.\d+Z$/, "Z") } } }, MERGE), msgs),
      act("Delete", "nb-delete", async () => { if (confirm(`Delete notebook ${nb.metadata.name}?`)) await req("DELETE", path(nb)); }, msgs)) },
  ], [], { id: "notebooks", empty: `No notebooks ${inWhere(ctx)}.` });
  const w = liveObjects(resPath(k, nsOf(ctx)), { onChange: items => t.setRows(items) });
  mount(root, h("h1", {}, "Notebooks"),
    h("div", { class: "toolbar" }, h("a", { href: "#/notebooks/new", id: "nb-new" }, "New notebook"), h("a", { href: "#/volumes" }, "Volumes"),
      h("a", { href: `#/create?kind=${encodeURIComponent(k.gv + "/Notebook")}` }, "New from YAML")),
    msgs, t);
  return () => w.stop();
}

// ---- the spawner form
const field = (label, input, hint) => h("label", {}, h("span", {}, label), input, hint ? h("small", { class: "muted" }, hint) : null);

function volumeRow(kind, claims, { name = "", size = "5Gi", mount: mp = "" } = {}) {
  const type = h("select", { class: "vol-type" }, h("option", { value: "new" }, "New volume"), h("option", { value: "existing" }, "Existing volume"));
  const nameIn = h("input", { class: "vol-name", value: name, placeholder: "claim name" });
  const existing = h("select", { class: "vol-existing" }, claims.map(c => h("option", { value: c }, c)));
  const sizeIn = h("input", { class: "vol-size", value: size, size: 6 });
  const mountIn = h("input", { class: "vol-mount", value: mp, placeholder: "/home/jovyan/data" });
  const row = h("div", { class: ["vol-row", kind] }, type, nameIn, existing, sizeIn, mountIn);
  const sync = () => { const nw = type.value === "new"; nameIn.hidden = !nw; sizeIn.hidden = !nw; existing.hidden = nw; };
  type.addEventListener("change", sync); sync();
  row.value = () => ({ isNew: type.value === "new", name: type.value === "new" ? nameIn.value.trim() : existing.value, size: sizeIn.value.trim(), mount: mountIn.value.trim() });
  return row;
}

export async function spawner(root, _p, ctx) {
  const ns = targetNs(ctx);
  const [cfg, pds, pvcs] = await Promise.all([
    get("/ui/notebooks/config"),
    get(`/apis/kubeflow.org/v1alpha1/namespaces/${encodeURIComponent(ns)}/poddefaults`).catch(() => ({ items: [] })),
    get(resPath(PVC, ns)).catch(() => ({ items: [] })),
  ]);
  const claims = (pvcs.items || []).map(p => p.metadata.name).sort();
  const name = h("input", { id: "nb-name", required: true, placeholder: "my-notebook" });
  const image = h("select", { id: "nb-image" }, (cfg.image.options || []).map(i => h("option", { value: i }, i)));
  image.value = cfg.image.value;
  const custom = h("input", { id: "nb-custom-image", placeholder: "or a custom image" });
  const cpu = h("input", { id: "nb-cpu", value: cfg.cpu.value, size: 6 });
  const memory = h("input", { id: "nb-memory", value: cfg.memory.value, size: 6 });
  const gpus = h("select", { id: "nb-gpus" }, ["0", "1", "2", "4", "8"].map(n => h("option", { value: n }, n === "0" ? "None" : n)));
  const vendor = h("input", { id: "nb-gpu-vendor", value: cfg.gpus.vendor || "nvidia.com/gpu" });
  const wsOn = h("input", { type: "checkbox", id: "nb-ws", checked: true });
  const ws = volumeRow("workspace", claims, { size: cfg.workspaceVolume.size, mount: cfg.workspaceVolume.mountPath });
  name.addEventListener("input", () => { const n = ws.querySelector(".vol-name"); if (!n.dataset.touched) n.value = name.value ? `${name.value}-workspace` : ""; });
  ws.querySelector(".vol-name").addEventListener("input", (e) => { e.target.dataset.touched = "1"; });
  const dataRows = h("div", { id: "nb-data-volumes" });
  const addData = h("button", { type: "button", id: "nb-add-data" }, "Add data volume");
  addData.addEventListener("click", () => dataRows.appendChild(volumeRow("data", claims, { mount: `/home/jovyan/data-${dataRows.children.length + 1}` })));
  const configs = (pds.items || []).map(pd => {
    const cb = h("input", { type: "checkbox", value: pd.metadata.name, class: "nb-config" });
    cb.pd = pd;
    return h("label", { class: "inline" }, cb, ` ${(pd.spec || {}).desc || pd.metadata.name}`);
  });
  const out = h("div", { id: "nb-result" });
  const form = h("form", { class: "form", id: "spawner" },
    field("Name", name), field("Namespace", h("input", { value: ns, disabled: true })),
    field("Image", image), field("Custom image", custom, "overrides the list when set"),
    h("div", { class: "row" }, field("CPU", cpu), field("Memory", memory), field("GPUs", gpus), field("GPU vendor", vendor)),
    h("fieldset", {}, h("legend", {}, h("label", { class: "inline" }, wsOn, " Workspace volume")), ws),
    h("fieldset", {}, h("legend", {}, "Data volumes"), dataRows, addData),
    h("fieldset", { id: "nb-configurations" }, h("legend", {}, "Configurations"),
      configs.length ? configs : h("p", { class: "muted" }, `No PodDefaults in namespace ${ns}.`)),
    h("div", { class: "toolbar" }, h("button", { type: "submit", id: "nb-launch" }, "Launch"), h("a", { href: "#/notebooks" }, "Cancel")),
    out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    mount(out);
    const nbName = name.value.trim();
    const vols = [...(wsOn.checked ? [ws.value()] : []), ...[...dataRows.children].map(r => r.value())];
    const labels = {};
    for (const cb of form.querySelectorAll(".nb-config:checked")) Object.assign(labels, ((cb.pd.spec || {}).selector || {}).matchLabels || {});
    const limits = {}, requests = {};
    if (cpu.value.trim()) requests.cpu = cpu.value.trim();
    if (memory.value.trim()) requests.memory = memory.value.trim();
    if (gpus.value !== "0") limits[vendor.value.trim()] = gpus.value;
    const nb = {
      apiVersion: "kubeflow.org/v1", kind: "Notebook",
      metadata: { name: nbName, namespace: ns, labels: { app: nbName } },
      spec: { template: { metadata: { labels }, spec: {
        containers: [{ name: nbName, image: custom.value.trim() || image.value, imagePullPolicy: "IfNotPresent",
          resources: { requests, ...(Object.keys(limits).length ? { limits } : {}) },
          volumeMounts: vols.map((v, i) => ({ name: `vol-${i}`, mountPath: v.mount })) }],
        volumes: vols.map((v, i) => ({ name: `vol-${i}`, persistentVolumeClaim: { claimName: v.name } })),
      } } },
    };
    try {
      // The Notebook first with dryRun, so a bad field is reported before any volume is made.
      await req("POST", `/apis/kubeflow.org/v1/namespaces/${encodeURIComponent(ns)}/notebooks?dryRun=All`, nb);
      for (const v of vols.filter(v => v.isNew)) {
        await req("POST", resPath(PVC, ns), { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: v.name, namespace: ns },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: v.size || "5Gi" } } } });
      }
      await req("POST", `/apis/kubeflow.org/v1/namespaces/${encodeURIComponent(ns)}/notebooks`, nb);
      ctx.go("#/notebooks");
    } catch (err) { mount(out, errorBox(err)); }
  });
  mount(root, h("h1", {}, "New notebook"), cfg.error ? errorBox(new Error(cfg.error)) : null, form);
}

// ---- the Volumes web app
export async function volumes(root, _p, ctx) {
  const ns = nsOf(ctx);
  const nbk = await findKind("kubeflow.org", "notebooks");
  let nbs = [];
  const msgs = h("div");
  const usedBy = (pvc) => nbs.filter(nb => nb.metadata.namespace === pvc.metadata.namespace && nbClaims(nb).includes(pvc.metadata.name)).map(nb => nb.metadata.name);
  const t = table([
    { title: "Status", value: p => (p.status || {}).phase || "Pending", render: p => badge((p.status || {}).phase || "Pending") },
    { title: "Name", value: p => p.metadata.name, render: p => h("a", { href: objHref(PVC, p.metadata.namespace, p.metadata.name) }, p.metadata.name) },
    { title: "Namespace", value: p => p.metadata.namespace },
    { title: "Size", value: p => ((p.spec.resources || {}).requests || {}).storage || "" },
    { title: "Access modes", value: p => (p.spec.accessModes || []).join(", ") },
    { title: "Storage class", value: p => p.spec.storageClassName || "" },
    { title: "Used by", value: p => usedBy(p).join(", "), render: p => h("span", { class: "used-by" }, usedBy(p).join(", ") || "—") },
    { title: "Age", value: p => p.metadata.creationTimestamp, render: p => age(p.metadata.creationTimestamp) },
    { title: "", value: () => "", render: p => act("Delete", "pvc-delete", async () => {
      const users = usedBy(p);
      if (confirm(users.length ? `Volume ${p.metadata.name} is used by ${users.join(", ")}. Delete it anyway?` : `Delete volume ${p.metadata.name}?`)) {
        await req("DELETE", resPath(PVC, p.metadata.namespace, p.metadata.name));
      }
    }, msgs) },
  ], [], { id: "volumes", empty: `No volumes ${inWhere(ctx)}.` });
  let pvcs = [];
  const draw = () => t.setRows(pvcs);
  const w = liveObjects(resPath(PVC, ns), { onChange: items => { pvcs = items; draw(); } });
  // Which notebooks use a volume changes rarely: re-read every 5 s instead of holding a second watch.
  const readNbs = async () => { if (!nbk) return; try { nbs = (await get(resPath(nbk, ns))).items || []; draw(); } catch { /* shown on the next try */ } };
  readNbs();
  const timer = setInterval(() => { if (!document.hidden) readNbs(); }, 5000);
  const name = h("input", { id: "pvc-name", required: true, placeholder: "my-volume" });
  const size = h("input", { id: "pvc-size", value: "5Gi", size: 6 });
  const mode = h("select", { id: "pvc-mode" }, ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"].map(m => h("option", { value: m }, m)));
  const sc = h("input", { id: "pvc-class", placeholder: "default" });
  const form = h("form", { class: "form inline-form", id: "pvc-form" },
    h("div", { class: "row" }, field("Name", name), field("Size", size), field("Access mode", mode), field("Storage class", sc),
      h("button", { type: "submit", id: "pvc-create" }, "Create volume")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const spec = { accessModes: [mode.value], resources: { requests: { storage: size.value.trim() } } };
    if (sc.value.trim()) spec.storageClassName = sc.value.trim();
    try {
      await req("POST", resPath(PVC, targetNs(ctx)), { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: name.value.trim() }, spec });
      name.value = "";
    } catch (err) { msgs.prepend(errorBox(err)); }
  });
  mount(root, h("h1", {}, "Volumes"), h("p", { class: "muted" }, `New volumes go to namespace ${targetNs(ctx)}.`), form, msgs, t);
  return () => { w.stop(); clearInterval(timer); };
}
