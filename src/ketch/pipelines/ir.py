"""Reading and checking KFP's compiled PipelineSpec (the IR), without importing kfp.

The IR arrives as YAML or JSON (one document, or two with the kfp-kubernetes PlatformSpec), as a dict from
kfp.Client's run body, or inside a PipelineRun object. Everything unsupported is found here, at submission,
with a message naming the task and the feature, so that no run fails half-way for a reason known up front.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ketch.machinery import bounds
from ketch.machinery.errors import StatusError

SUPPORTED_SCHEMA_MAJOR = "2"
PARAM_TYPES = {"NUMBER_DOUBLE", "NUMBER_INTEGER", "STRING", "BOOLEAN", "LIST", "STRUCT", "TASK_FINAL_STATUS", "TASK_CONFIG"}


# kfp-kubernetes operations the KFP driver carries out itself instead of running a container.
PLATFORM_OPS = {"argostub/createpvc": "createpvc", "argostub/deletepvc": "deletepvc"}
# Task kinds that are one step of work (not a DAG or loop): what progress counts and lineage records.
LEAF_KINDS = ("container", "importer", *PLATFORM_OPS.values())


class IRError(ValueError):
    """The pipeline cannot be run; the message names where and why."""


@dataclass
class Pipeline:
    spec: dict
    platform: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # options accepted but without effect here

    @property
    def name(self) -> str:
        return (self.spec.get("pipelineInfo") or {}).get("name", "pipeline")

    @property
    def root(self) -> dict:
        return self.spec["root"]

    def component(self, ref: str) -> dict:
        return (self.spec.get("components") or {})[ref]

    def executor(self, label: str) -> dict:
        return ((self.spec.get("deploymentSpec") or {}).get("executors") or {})[label]

    def platform_executor(self, label: str) -> dict:
        k8s = (self.platform.get("platforms") or {}).get("kubernetes") or {}
        return ((k8s.get("deploymentSpec") or {}).get("executors") or {}).get(label) or {}


def parse_text(text: str | bytes) -> dict:
    """YAML or JSON text -> the dict kfp.Client would send: the bare PipelineSpec, or
    ``{"pipeline_spec": ..., "platform_spec": ...}`` when a second document is present."""
    try:
        docs = [d for d in bounds.load_yaml_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise IRError(f"pipeline package is not valid YAML or JSON: {e}") from e
    except StatusError as e:  # over the depth or alias budget
        raise IRError(f"pipeline package refused: {e.message}") from e
    if not docs:
        raise IRError("pipeline package is empty")
    if len(docs) == 1:
        return docs[0]
    return {"pipeline_spec": docs[0], "platform_spec": docs[1]}


def split(body: Any) -> Pipeline:
    """Accept the bare spec, a {pipeline_spec, platform_spec} wrapper, or a JSON string of either."""
    if isinstance(body, str | bytes):
        body = parse_text(body)
    if not isinstance(body, dict):
        raise IRError("pipeline_spec: expected an object")
    if "pipeline_spec" in body or "pipelineSpec" in body:
        spec = body.get("pipeline_spec") or body.get("pipelineSpec") or {}
        plat = body.get("platform_spec") or body.get("platformSpec") or {}
        return Pipeline(spec, plat)
    return Pipeline(body, {})


def load(body: Any) -> Pipeline:
    p = split(body)
    p.notes = validate(p)
    return p


# -- validation -----------------------------------------------------------------------------------------------

_CEL_OK = re.compile(r"^[\s\w\.\[\]'\"\-=!<>&|()+,:/]*$")


def validate(p: Pipeline) -> list[str]:
    """Raise IRError for what ketch cannot run; return notes about ignored platform options."""
    spec = p.spec
    if not isinstance(spec, dict) or "root" not in spec:
        raise IRError("pipeline_spec.root: required (is this a compiled KFP v2 PipelineSpec?)")
    sv = str(spec.get("schemaVersion") or "")
    if not sv.startswith(SUPPORTED_SCHEMA_MAJOR + "."):
        raise IRError(f"pipeline_spec.schemaVersion: unsupported value {sv!r} (KFP v2 IR, schemaVersion 2.x, is required)")
    comps = spec.get("components") or {}
    execs = (spec.get("deploymentSpec") or {}).get("executors") or {}
    notes: list[str] = []
    _check_component(p, "root", spec["root"], comps, execs, notes, seen=set())
    return notes


def _check_component(p: Pipeline, where: str, comp: dict, comps: dict, execs: dict, notes: list[str], seen: set) -> None:
    for kind in ("inputDefinitions", "outputDefinitions"):
        for pname, pd in ((comp.get(kind) or {}).get("parameters") or {}).items():
            t = pd.get("parameterType")
            if t and t not in PARAM_TYPES:
                raise IRError(f"{where}: {kind}.parameters.{pname}: unsupported parameterType {t!r}")
    if "dag" in comp:
        dag = comp["dag"] or {}
        tasks = dag.get("tasks") or {}
        for tname, t in tasks.items():
            tw = f"task {tname!r}" if where == "root" else f"task {where}/{tname}"
            for dep in t.get("dependentTasks") or []:
                if dep not in tasks:
                    raise IRError(f"{tw}: dependentTasks names {dep!r}, which is not a task of the same DAG")
            ref = (t.get("componentRef") or {}).get("name")
            if not ref or ref not in comps:
                raise IRError(f"{tw}: componentRef {ref!r} is not defined in components")
            sub = comps[ref]
            if "dag" not in sub and "executorLabel" not in sub:
                raise IRError(f"{tw}: component {ref!r} has neither a dag nor an executorLabel (a kfp compiler bug with reused sub-pipelines; rename the groups)")
            cond = (t.get("triggerPolicy") or {}).get("condition")
            if cond and not _CEL_OK.match(cond):
                raise IRError(f"{tw}: triggerPolicy.condition uses CEL beyond the supported subset: {cond!r}")
            strat = (t.get("triggerPolicy") or {}).get("strategy")
            if strat and strat not in ("ALL_UPSTREAM_TASKS_SUCCEEDED", "ALL_UPSTREAM_TASKS_COMPLETED", "TRIGGER_STRATEGY_UNSPECIFIED"):
                raise IRError(f"{tw}: triggerPolicy.strategy {strat!r} is not supported")
            for pname, inp in ((t.get("inputs") or {}).get("parameters") or {}).items():
                sel = inp.get("parameterExpressionSelector")
                if sel and not _SELECTOR.match(sel):
                    raise IRError(f"{tw}: inputs.parameters.{pname}.parameterExpressionSelector {sel!r} is not supported")
                prod = (inp.get("taskOutputParameter") or {}).get("producerTask") or (inp.get("taskFinalStatus") or {}).get("producerTask")
                if prod and prod not in tasks:
                    raise IRError(f"{tw}: inputs.parameters.{pname} reads task {prod!r}, which is not in the same DAG")
            for aname, inp in ((t.get("inputs") or {}).get("artifacts") or {}).items():
                prod = (inp.get("taskOutputArtifact") or {}).get("producerTask")
                if prod and prod not in tasks:
                    raise IRError(f"{tw}: inputs.artifacts.{aname} reads task {prod!r}, which is not in the same DAG")
            if "executorLabel" in sub:
                label = sub["executorLabel"]
                if label not in execs:
                    raise IRError(f"{tw}: executor {label!r} is not in deploymentSpec.executors")
                ex = execs[label]
                if "container" not in ex and "importer" not in ex:
                    feature = next(iter(ex), "unknown")
                    raise IRError(f"{tw}: executor kind {feature!r} is not supported (only container and importer; resolver and customJob are Vertex AI features)")
                img = str((ex.get("container") or {}).get("image", ""))
                if img.startswith("argostub/") and img not in PLATFORM_OPS:
                    raise IRError(f"{tw}: platform operation {img!r} is not supported (kfp-kubernetes CreatePVC and DeletePVC are)")
                for k in p.platform_executor(label):
                    if k not in ("secretAsEnv", "secretAsVolume", "configMapAsEnv", "configMapAsVolume", "pvcMount", "podMetadata", "activeDeadlineSeconds", "fieldPathAsEnv"):
                        notes.append(f"{tw}: kfp-kubernetes option {k!r} has no effect on one machine; ignored")
            elif ref not in seen:
                seen.add(ref)
                _check_component(p, tname if where == "root" else f"{where}/{tname}", sub, comps, execs, notes, seen)
        _check_cycles(where, tasks)


def _check_cycles(where: str, tasks: dict) -> None:
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise IRError(f"{where}: dependency cycle between tasks {' -> '.join([*stack, n])}")
        state[n] = 1
        for d in tasks[n].get("dependentTasks") or []:
            visit(d, [*stack, n])
        state[n] = 2

    for n in tasks:
        visit(n, [])


_SELECTOR = re.compile(r'^parseJson\(string_value\)(\[("[^"]*"|\d+)\])+$')


def apply_selector(value: Any, selector: str) -> Any:
    """``parseJson(string_value)["a"]`` (the compiler's only selector form): index into a JSON value."""
    if isinstance(value, str):
        value = json.loads(value)
    for m in re.finditer(r'\[("([^"]*)"|(\d+))\]', selector):
        value = value[m.group(2)] if m.group(2) is not None else value[int(m.group(3))]
    return value


def cast_param(value: Any, ptype: str | None) -> Any:
    """Native JSON value of the declared type: integers that arrive as floats (every NUMBER_INTEGER default
    does), and strings holding lists or dicts, are made right before the executor sees them."""
    if value is None or ptype is None:
        return value
    if ptype == "NUMBER_INTEGER":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(float(value))
        return value
    if ptype == "NUMBER_DOUBLE":
        return float(value) if isinstance(value, int | str) and not isinstance(value, bool) else value
    if ptype == "BOOLEAN":
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)
    if ptype in ("LIST", "STRUCT") and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if ptype == "STRING" and not isinstance(value, str):
        return json.dumps(value) if isinstance(value, dict | list) else str(value)
    return value


def root_artifacts(p: Pipeline, values: dict) -> dict[str, list[dict]]:
    """The pipeline's own input artifacts (``def p(data: Input[Dataset])``), given at run creation.

    KFP's RuntimeConfig has no field for them, so they travel where kfp.Client puts every argument: in
    ``runtime_config.parameters``, keyed by the input's name. A value is an artifact URI (any fsspec URL or
    local path), an object ``{"uri": ..., "metadata": {...}}``, or a list of either for ``Input[List[...]]``.
    Raises IRError naming the input when a required one is missing or a value has the wrong shape."""
    out: dict[str, list[dict]] = {}
    defs = (p.root.get("inputDefinitions") or {}).get("artifacts") or {}
    for name, d in defs.items():
        field_ = f"runtime_config.parameters.{name}"
        if name not in values or values[name] in (None, ""):
            if d.get("isOptional"):
                continue
            raise IRError(f"{field_}: required (the pipeline's input artifact {name!r}; give its URI)")
        v = values[name]
        items = v if isinstance(v, list) else [v]
        if not d.get("isArtifactList") and len(items) != 1:
            raise IRError(f"{field_}: one artifact expected, got a list of {len(items)}")
        arts = []
        for i, it in enumerate(items):
            where = f"{field_}[{i}]" if isinstance(v, list) else field_
            if isinstance(it, str):
                uri, md = it, {}
            elif isinstance(it, dict) and isinstance(it.get("uri"), str) and it["uri"]:
                uri, md = it["uri"], it.get("metadata") or {}
                if not isinstance(md, dict):
                    raise IRError(f"{where}.metadata: expected an object")
            else:
                raise IRError(f"{where}: expected an artifact URI string or an object with 'uri'")
            arts.append({"name": name, "type": d.get("artifactType") or {"schemaTitle": "system.Artifact"}, "uri": uri, "metadata": md})
        out[name] = arts
    return out
