"""Hypothesis strategies for the API fuzz: request bodies generated from ketch's own OpenAPI v3 schemas,
mostly well-formed (so requests reach admission, validators and controllers) with a wrong value of an
arbitrary type slipped in at some nodes, plus the odd query parameter and raw body."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

DNS = st.from_regex(r"\A[a-z]([a-z0-9-]{0,10}[a-z0-9])?\Z")
NAMES = st.one_of(st.sampled_from(["seed", "seed", "x", "a.b", "UPPER", "", "-bad-", "a" * 300]), DNS)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16), st.sampled_from(["0", "1.5", "-1", "1e309", "true", "100Mi", "2Gi", "1000m", "${trialParameters.x}"]),
)
ANY_JSON = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3), max_leaves=8)
QUERY_VALUES = st.one_of(
    st.text(max_size=12), st.integers(-5, 10**12).map(str), DNS,
    st.sampled_from(["", "abc", "-1", "0", "true", "a=b", "a in (x,y)", "!a", "metadata.name=x", "spec.x=1",
                     "status.phase!=Running", "a==b,c!=d", "(", "a,,b", "%", "\x00", "All", "Strict", "Foreground"]),
)
MAX_DEPTH = 6


class SchemaStrategies:
    """Strategies for the schemas of one OpenAPI v3 document (``components.schemas``), memoised."""

    def __init__(self, doc: dict, wrong_every: int = 12) -> None:
        self.components = (doc.get("components") or {}).get("schemas") or {}
        self.wrong_every = wrong_every  # 0: only values of the schema's types
        self._memo: dict[tuple[int, int], st.SearchStrategy] = {}

    def resolve(self, s: Any) -> dict:
        seen = 0
        while isinstance(s, dict) and "$ref" in s and seen < 20:
            s = self.components.get(s["$ref"].rsplit("/", 1)[-1], {})
            seen += 1
        if isinstance(s, dict) and s.get("allOf") and len(s) == 1:
            return self.resolve(s["allOf"][0])
        return s if isinstance(s, dict) else {}

    def for_schema(self, schema: Any, depth: int = 0, key: str = "") -> st.SearchStrategy:
        s = self.resolve(schema)
        memo_key = (id(s), depth)
        if memo_key not in self._memo:
            proper = self._proper(s, depth, key)
            if self.wrong_every:
                # one node in ``wrong_every`` gets a value of any type instead: wrong types, nulls, odd numbers
                proper = st.integers(0, self.wrong_every - 1).flatmap(lambda i, p=proper: ANY_JSON if i == 0 else p)
            self._memo[memo_key] = proper
        return self._memo[memo_key]

    def _proper(self, s: dict, depth: int, key: str) -> st.SearchStrategy:
        if depth > MAX_DEPTH:
            return SCALARS
        if s.get("enum"):
            return st.sampled_from(s["enum"])
        if s.get("x-kubernetes-int-or-string"):
            return st.one_of(st.integers(-10, 10**6), st.sampled_from(["1", "50%", "abc", "100Mi"]))
        t = s.get("type")
        if t == "object" or "properties" in s or "additionalProperties" in s:
            props = s.get("properties") or {}
            if not props:
                addl = s.get("additionalProperties")
                val = self.for_schema(addl, depth + 1) if isinstance(addl, dict) else ANY_JSON
                return st.dictionaries(st.one_of(DNS, st.text(max_size=10)), val, max_size=3)
            required = [k for k in s.get("required") or [] if k in props]
            # at most a handful of the optional fields per object: deep, not wide
            optional = sorted(k for k in props if k not in required)
            req = {k: self.for_schema(props[k], depth + 1, k) for k in required}

            def build(chosen: list[str]) -> st.SearchStrategy:
                return st.fixed_dictionaries({**req, **{k: self.for_schema(props[k], depth + 1, k) for k in chosen}})

            return st.lists(st.sampled_from(optional), max_size=4, unique=True).flatmap(build) if optional else st.fixed_dictionaries(req)
        if t == "array":
            return st.lists(self.for_schema(s.get("items") or {}, depth + 1), max_size=3)
        if t == "string":
            if key in ("name", "namespace", "generateName", "serviceAccountName", "nodeName"):
                return NAMES
            if key in ("apiVersion",):
                return st.sampled_from(["v1", "batch/v1", "kubeflow.org/v1", "kubeflow.org/v1beta1", "serving.kserve.io/v1beta1", "bogus/v9"])
            if key in ("kind",):
                return st.sampled_from(["Pod", "Job", "PyTorchJob", "ConfigMap", "Nope"])
            return st.one_of(st.text(max_size=16), DNS, st.sampled_from(["1", "100Mi", "Never", "Always", "OnFailure", "grid", "random"]))
        if t == "integer":
            return st.integers(-(2**40), 2**40)
        if t == "number":
            return st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False))
        if t == "boolean":
            return st.booleans()
        return ANY_JSON


def json_patch_ops() -> st.SearchStrategy:
    path = st.one_of(st.sampled_from(["/metadata/labels/a", "/spec", "/spec/x", "/metadata/name", "/status", "/metadata/finalizers/-", "/", "", "/a~1b", "/spec/containers/0/image"]),
                     st.text(max_size=12))
    op = st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]), "path": path},
                               optional={"value": ANY_JSON, "from": path})
    return st.one_of(st.lists(op, max_size=4), ANY_JSON)
