"""RBAC authorization with Kubernetes' semantics, without HTTP.

A request (``requestinfo.Attributes``) is allowed when any rule of any Role or ClusterRole bound to the
user, to one of its groups, or (for a ServiceAccount) to the account, matches it; there is no deny.
RoleBindings grant in their own namespace, ClusterRoleBindings everywhere and at the cluster scope. Users
in ``system:masters`` are allowed everything without looking.

The RBAC objects are read from the store into a ``Policy`` snapshot indexed by subject, rebuilt lazily after
any RBAC write (a store subscription marks it stale), so a request costs a few dict lookups however many
bindings exist; the rules that apply to (user, groups, namespace) are cached per snapshot.

Also here, because they need the same rule matching: ClusterRole aggregation (``aggregate``, run by the
aggregation controller and at bootstrap), escalation prevention (``check_escalation``: a Role or binding
may only grant what its author holds, unless the author has ``escalate``/``bind``), the rules a user has in
a namespace (SelfSubjectRulesReview), and kube-apiserver's 403 message.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from ketch.machinery.authn import MASTERS, UserInfo
from ketch.machinery.errors import StatusError
from ketch.machinery.requestinfo import Attributes
from ketch.machinery.selectors import parse_label_selector

GROUP = "rbac.authorization.k8s.io"
KEYS = {f"{GROUP}/roles", f"{GROUP}/clusterroles", f"{GROUP}/rolebindings", f"{GROUP}/clusterrolebindings"}

# The caller of the request being served (set by the authorization layer), for admission checks that
# depend on who asks (escalation prevention). Controllers run outside any request: None, trusted.
current_user: ContextVar[UserInfo | None] = ContextVar("ketch_current_user", default=None)


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    resource_names: frozenset[str] = frozenset()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, r: dict) -> Rule:
        return cls(frozenset(r.get("verbs") or ()), frozenset(r.get("apiGroups") or ()), frozenset(r.get("resources") or ()),
                   frozenset(r.get("resourceNames") or ()), tuple(r.get("nonResourceURLs") or ()))

    def to_dict(self) -> dict:
        out: dict = {"verbs": sorted(self.verbs)}
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
            return out
        out["apiGroups"] = sorted(self.api_groups)
        out["resources"] = sorted(self.resources)
        if self.resource_names:
            out["resourceNames"] = sorted(self.resource_names)
        return out

    def verb_ok(self, verb: str) -> bool:
        return "*" in self.verbs or verb in self.verbs

    def allows(self, a: Attributes) -> bool:
        if not self.verb_ok(a.verb):
            return False
        if not a.is_resource:
            return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1])) for u in self.non_resource_urls)
        if not self.resources or not ("*" in self.api_groups or a.api_group in self.api_groups):
            return False
        if not _resource_matches(self.resources, a.resource, a.subresource):
            return False
        return not self.resource_names or (bool(a.name) and a.name in self.resource_names)


def _resource_matches(rule_resources: frozenset[str], resource: str, sub: str) -> bool:
    if "*" in rule_resources:
        return True
    full = f"{resource}/{sub}" if sub else resource
    if full in rule_resources:
        return True
    return bool(sub) and (f"*/{sub}" in rule_resources or f"{resource}/*" in rule_resources)


def _subject_keys(user: UserInfo) -> list[tuple[str, str]]:
    return [("User", user.name), *(("Group", g) for g in user.groups)]


def _binding_subject_key(s: dict, binding_ns: str) -> tuple[str, str] | None:
    kind, name = s.get("kind"), s.get("name") or ""
    if kind == "ServiceAccount":
        return "User", f"system:serviceaccount:{s.get('namespace') or binding_ns}:{name}"
    if kind in ("User", "Group"):
        return kind, name
    return None


@dataclass(frozen=True)
class Grant:
    namespace: str  # "" for a ClusterRoleBinding: everywhere
    role_kind: str
    role_name: str
    binding: str


class Policy:
    """One consistent snapshot of every Role, ClusterRole and binding, indexed by subject."""

    def __init__(self, roles: list[dict], cluster_roles: list[dict], bindings: list[dict], cluster_bindings: list[dict]) -> None:
        self.roles = {(r["metadata"].get("namespace", ""), r["metadata"]["name"]): tuple(Rule.of(x) for x in r.get("rules") or ())
                      for r in roles}
        self.cluster_roles = {r["metadata"]["name"]: tuple(Rule.of(x) for x in r.get("rules") or ()) for r in cluster_roles}
        self.by_subject: dict[tuple[str, str], list[Grant]] = {}
        for b in bindings:
            self._index(b, b["metadata"].get("namespace", ""))
        for b in cluster_bindings:
            self._index(b, "")

    def _index(self, b: dict, ns: str) -> None:
        ref = b.get("roleRef") or {}
        g = Grant(ns, ref.get("kind", ""), ref.get("name", ""), b["metadata"]["name"])
        for s in b.get("subjects") or ():
            key = _binding_subject_key(s, ns)
            if key is not None:
                self.by_subject.setdefault(key, []).append(g)

    def role_rules(self, kind: str, name: str, ns: str) -> tuple[Rule, ...]:
        if kind == "ClusterRole":
            return self.cluster_roles.get(name, ())
        return self.roles.get((ns, name), ())

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        out: list[Rule] = []
        for key in _subject_keys(user):
            for g in self.by_subject.get(key, ()):
                if g.namespace == "" or g.namespace == namespace:
                    out.extend(self.role_rules(g.role_kind, g.role_name, g.namespace))
        return out


class Authorizer:
    """Answers "may this user do this?" from the RBAC objects in the store."""

    CACHE_MAX = 20_000

    def __init__(self, store) -> None:  # noqa: ANN001 - a ketch.store Store
        self.store = store
        self._policy: Policy | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple, list[Rule]] = {}
        self._generation = 0  # bumped by every RBAC write; a snapshot read across one is not kept
        store.subscribe(self._changed)

    def _changed(self, ch) -> None:  # noqa: ANN001
        if ch.key in KEYS:
            self._generation += 1
            self._policy = None

    def policy(self) -> Policy:
        p = self._policy
        if p is not None:
            return p
        with self._lock:
            while self._policy is None:
                gen = self._generation
                lst = [self.store.list(f"{GROUP}/{k}")[0] for k in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")]
                built = Policy(*lst)
                self._cache = {}
                if gen == self._generation:
                    self._policy = built
                else:
                    return built  # a write landed meanwhile: answer from this one, rebuild next time
            return self._policy

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        p = self.policy()
        if p is not self._policy:  # a snapshot not kept (an RBAC write raced its read): no caching either
            return p.rules_for(user, namespace)
        key = (id(p), user.name, user.groups, namespace)
        hit = self._cache.get(key)
        if hit is None:
            hit = p.rules_for(user, namespace)
            if len(self._cache) > self.CACHE_MAX:
                self._cache = {}
            self._cache[key] = hit
        return hit

    def authorize(self, user: UserInfo, a: Attributes) -> bool:
        if MASTERS in user.groups:
            return True
        return any(r.allows(a) for r in self.rules_for(user, a.namespace))

    # -- escalation prevention -------------------------------------------------------------------------

    def covers(self, user: UserInfo, rules: Iterable[dict], namespace: str) -> list[dict]:
        """The rules in ``rules`` that ``user`` does not itself hold in ``namespace`` ("" = cluster-wide)."""
        if MASTERS in user.groups:
            return []
        held = self.rules_for(user, namespace)
        missing = []
        for r in rules:
            if not _held(held, Rule.of(r)):
                missing.append(r)
        return missing

    def check_escalation(self, user: UserInfo | None, obj: dict) -> None:
        """Raise 403 when ``user`` writes a Role/ClusterRole or a binding granting more than it holds."""
        if user is None or MASTERS in user.groups:
            return
        kind, md = obj.get("kind"), obj.get("metadata") or {}
        ns, name = md.get("namespace", ""), md.get("name", "")
        plural = {"Role": "roles", "ClusterRole": "clusterroles", "RoleBinding": "rolebindings", "ClusterRoleBinding": "clusterrolebindings"}[kind]
        if kind in ("Role", "ClusterRole"):
            if self.authorize(user, Attributes("escalate", GROUP, plural, "", ns, name)):
                return
            if obj.get("aggregationRule"):  # its rules come from other roles: only who may escalate may say which
                raise StatusError(403, "Forbidden", f'{plural}.{GROUP} "{name}" is forbidden: user "{user.name}" must have '
                                  "cluster-admin privileges to use the aggregationRule", {"name": name, "group": GROUP, "kind": plural})
            rules = obj.get("rules") or []
        else:
            ref = obj.get("roleRef") or {}
            ref_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            if self.authorize(user, Attributes("bind", GROUP, ref_plural, "", ns, ref.get("name", ""))):
                return
            rules = [r.to_dict() for r in self.policy().role_rules(ref.get("kind", ""), ref.get("name", ""), ns)]
        missing = self.covers(user, rules, ns)
        if missing:
            groups = ",".join(f'"{g}"' for g in user.groups)
            listed = "\n".join(_render_rule(r) for r in missing)
            raise StatusError(403, "Forbidden",
                              f'{plural}.{GROUP} "{name}" is forbidden: user "{user.name}" (groups=[{groups}]) is attempting to '
                              f"grant RBAC permissions not currently held:\n{listed}",
                              {"name": name, "group": GROUP, "kind": plural})


def _held(held: list[Rule], want: Rule) -> bool:
    """Whether the rules ``held`` together allow everything ``want`` allows (checked point by point)."""
    if want.non_resource_urls:
        return all(any(h.verb_ok(v) and any(u == "*" or u == url or (u.endswith("*") and url.startswith(u[:-1]))
                                            for u in h.non_resource_urls) for h in held)
                   for v in want.verbs for url in want.non_resource_urls)
    names = want.resource_names or {""}
    for v in want.verbs:
        for g in want.api_groups:
            for res in want.resources:
                resource, _, sub = res.partition("/")
                for n in names:
                    ok = False
                    for h in held:
                        if not (h.verb_ok(v) and ("*" in h.api_groups or g in h.api_groups) and h.resources):
                            continue
                        if not _resource_matches(h.resources, resource, sub):
                            continue
                        if h.resource_names and (not n or n not in h.resource_names):
                            continue
                        ok = True
                        break
                    if not ok:
                        return False
    return True


def _render_rule(r: dict) -> str:
    def q(xs: Iterable[str]) -> str:
        return "[" + " ".join(f'"{x}"' for x in xs) + "]"

    if r.get("nonResourceURLs"):
        return f"{{NonResourceURLs:{q(r['nonResourceURLs'])}, Verbs:{q(r.get('verbs') or [])}}}"
    s = f"{{APIGroups:{q(r.get('apiGroups') or [])}, Resources:{q(r.get('resources') or [])}"
    if r.get("resourceNames"):
        s += f", ResourceNames:{q(r['resourceNames'])}"
    return s + f", Verbs:{q(r.get('verbs') or [])}}}"


# -- 403 in kube-apiserver's words ---------------------------------------------------------------------

def forbidden(user: UserInfo, a: Attributes) -> StatusError:
    if not a.is_resource:
        return StatusError(403, "Forbidden", f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"', {})
    gr = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
    scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    why = f'User "{user.name}" cannot {a.verb} resource "{a.full_resource}" in API group "{a.api_group}" {scope}'
    head = f'{gr} "{a.name}" is forbidden' if a.name else f"{gr} is forbidden"
    return StatusError(403, "Forbidden", f"{head}: {why}", {"name": a.name, "group": a.api_group, "kind": a.resource})


# -- ClusterRole aggregation ---------------------------------------------------------------------------

def aggregate(cluster_roles: list[dict]) -> dict[str, list[dict]]:
    """For each ClusterRole with an ``aggregationRule``: the rules it should hold (the union of the rules of
    the ClusterRoles its selectors match, in name order), for those whose rules differ from that. Aggregated
    roles can feed others (edit into admin), so this runs to a fixed point."""
    by_name = {c["metadata"]["name"]: c for c in cluster_roles}
    rules = {n: list(c.get("rules") or []) for n, c in by_name.items()}
    for _ in range(8):
        changed = False
        for n, c in sorted(by_name.items()):
            agg = c.get("aggregationRule")
            if not agg:
                continue
            want: list[dict] = []
            for sel in agg.get("clusterRoleSelectors") or []:
                pred = parse_label_selector(",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()) or None)
                for m, other in sorted(by_name.items()):
                    if m != n and pred(other["metadata"].get("labels") or {}):
                        for r in rules[m]:
                            if r not in want:
                                want.append(r)
            if want != rules[n]:
                rules[n] = want
                changed = True
        if not changed:
            break
    return {n: rules[n] for n, c in by_name.items() if c.get("aggregationRule") and rules[n] != list(c.get("rules") or [])}
