// "Manage contributors": who may work in the current namespace, through KFAM's /kfam/v1/bindings (RoleBindings
// with Kubeflow's user/role annotations). Only the namespace's owner (who may manage RoleBindings) can add or
// remove; everyone else sees the page say so instead of buttons that would fail.
import { h, mount, table, errorBox } from "../dom.js";
import { req, get } from "../api.js";
import { workgroup } from "../app.js";

export async function contributors(root, _p, ctx) {
  const ns = ctx.ns.get();
  if (!ns || ns === "*") { mount(root, h("h1", {}, "Manage contributors"), h("p", { class: "muted" }, "Pick a namespace first.")); return; }
  const wg = await workgroup();
  const mine = (wg.namespaces || []).find(n => n.name === ns);
  const owner = wg.clusterAdmin || (mine && mine.role === "owner");
  const status = h("div", { id: "contrib-status" });
  const t = table([
    { title: "User", value: b => b.user.name },
    { title: "Role", value: b => b.RoleRef.name },
    { title: "", value: () => "", render: b => owner && b.RoleRef.name !== "admin"
      ? h("button", { class: "contrib-remove", "data-user": b.user.name, onclick: () => remove(b) }, "Remove") : "" },
  ], [], { id: "contributors", empty: "No contributors yet." });
  async function load() {
    try { t.setRows((await get(`/kfam/v1/bindings?namespace=${encodeURIComponent(ns)}`)).bindings || []); }
    catch (e) { mount(status, errorBox(e)); }
  }
  async function remove(b) {
    try { await req("DELETE", "/kfam/v1/bindings", b); await load(); } catch (e) { mount(status, errorBox(e)); }
  }
  const user = h("input", { id: "contrib-user", placeholder: "user (e.g. bob@example.org)", required: true });
  const role = h("select", { id: "contrib-role" }, h("option", { value: "edit" }, "edit"), h("option", { value: "view" }, "view"));
  const form = h("form", { id: "contrib-form", class: "toolbar", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await req("POST", "/kfam/v1/bindings", { user: { kind: "User", name: user.value.trim() }, referredNamespace: ns,
        RoleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.value } });
      user.value = ""; mount(status); await load();
    } catch (err) { mount(status, errorBox(err)); }
  } }, user, role, h("button", { type: "submit" }, "Add contributor"));
  mount(root, h("h1", {}, `Contributors of ${ns}`),
    owner ? form : h("p", { class: "muted", id: "contrib-readonly" }, `Only the owner of ${ns} can add or remove contributors.`),
    status, t);
  await load();
}
