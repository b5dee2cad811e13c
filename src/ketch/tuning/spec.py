"""Katib Experiment defaults and admission rules, as Katib's defaulter and validating webhook apply them.

Pure functions over the object: the validator is registered with ``Api.add_validator`` (kinds defined in
YAML cannot carry a Python validator), so a bad Experiment is refused at creation with a message naming the
field, and nothing is written.
"""

from __future__ import annotations

import math
import re

from ketch.kinds.definitions import FieldError
from ketch.tuning.algorithms import ALGORITHMS, EARLY_STOPPING

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PARAM_REF = re.compile(r"\$\{trialParameters\.([^}]+)\}")
META_REF = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|Labels\[[^\]]+\]|Annotations\[[^\]]+\])\}$")
DEFAULT_REGEX = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
TWO_GROUPS = re.compile(r".*\(.*\).*\(.*\).*")
JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
TRAINING_SUCCESS = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
NAS_PARAMETERS = ("architecture", "nn_config", "algorithm-settings", "search-space", "num-layers")  # ENAS's and DARTS's (Katib's names)
COLLECTORS = ("StdOut", "File", "Push", "Custom", "TensorFlowEvent")
TRAINING_KINDS = {"TFJob", "PyTorchJob", "XGBoostJob", "MPIJob", "JAXJob", "PaddleJob"}
# Trainer v2: a TrainJob completes like a Job; its rank-0 pod is the JobSet's `node` replicated job, index 0.
TRAINJOB_PRIMARY = {"jobset.sigs.k8s.io/replicatedjob-name": "node", "batch.kubernetes.io/job-completion-index": "0"}


def default_experiment(exp: dict) -> dict:
    """Katib's defaults (experiment_defaults.go): parallelTrialCount 3, resumePolicy Never, metric
    strategies by objective type, uniform distributions, StdOut collector, success/failure conditions."""
    spec = exp.setdefault("spec", {})
    spec.setdefault("parallelTrialCount", 3)
    spec.setdefault("resumePolicy", "Never")
    obj = spec.setdefault("objective", {})
    strat = "min" if obj.get("type") == "minimize" else "max" if obj.get("type") == "maximize" else "latest"
    have = {s.get("name") for s in obj.get("metricStrategies") or []}
    ms = list(obj.get("metricStrategies") or [])
    for m in [obj.get("objectiveMetricName")] + list(obj.get("additionalMetricNames") or []):
        if m and m not in have:
            ms.append({"name": m, "value": strat})
    obj["metricStrategies"] = ms
    for p in spec.get("parameters") or []:
        fs = p.get("feasibleSpace")
        if fs and isinstance(fs, dict) and p.get("parameterType") in ("int", "double"):
            fs.setdefault("distribution", "uniform")
    mc = spec.setdefault("metricsCollectorSpec", {})
    coll = mc.setdefault("collector", {})
    coll.setdefault("kind", "StdOut")
    if coll["kind"] == "File":
        src = mc.setdefault("source", {}).setdefault("fileSystemPath", {})
        src.setdefault("path", "/var/log/katib/metrics.log")
        src.setdefault("kind", "File")
        src.setdefault("format", "TEXT")
    elif coll["kind"] == "TensorFlowEvent":
        src = mc.setdefault("source", {}).setdefault("fileSystemPath", {})
        src.setdefault("path", "/var/log/katib/tfevent/")
        src.setdefault("kind", "Directory")
    tt = spec.setdefault("trialTemplate", {})
    kind = (tt.get("trialSpec") or {}).get("kind")
    if kind in ("Job", "TrainJob"):
        tt.setdefault("successCondition", JOB_SUCCESS)
        tt.setdefault("failureCondition", JOB_FAILURE)
        if kind == "TrainJob":
            tt.setdefault("primaryPodLabels", dict(TRAINJOB_PRIMARY))
    elif kind in TRAINING_KINDS:
        tt.setdefault("successCondition", TRAINING_SUCCESS)
        tt.setdefault("failureCondition", JOB_FAILURE)
        tt.setdefault("primaryPodLabels", {"training.kubeflow.org/job-role": "master"})
    return exp


# The most points a grid may have: Katib counts and enumerates them; beyond this the Experiment would
# never finish anyway, and enumerating the space could take the server's memory with it.
MAX_GRID_POINTS = 100_000


def _f(v: object) -> float | None:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def validate_parameters(params: list[dict]) -> list[FieldError]:
    errs: list[FieldError] = []
    if not params:
        return [FieldError("spec.parameters", "FieldValueRequired", "spec.parameters or spec.nasConfig must be specified")]
    seen: set[str] = set()
    for i, p in enumerate(params):
        path = f"spec.parameters[{i}]"
        name = p.get("name")
        if not name:
            errs.append(FieldError(f"{path}.name", "FieldValueRequired", "parameter name is required"))
        elif name in seen:
            errs.append(FieldError(f"{path}.name", "FieldValueDuplicate", f"duplicate parameter {name!r}", name))
        seen.add(name or "")
        fs = p.get("feasibleSpace") or {}
        t = p.get("parameterType")
        if not fs:
            errs.append(FieldError(f"{path}.feasibleSpace", "FieldValueRequired", f"feasibleSpace of parameter {name!r} must not be empty"))
            continue
        if t in ("int", "double"):
            lo, hi = _f(fs.get("min")), _f(fs.get("max"))
            bad = [k for k in ("min", "max", "step") if (x := _f(fs.get(k))) is not None and not math.isfinite(x)]
            for k in bad:
                errs.append(FieldError(f"{path}.feasibleSpace.{k}", "FieldValueInvalid", f"{k} of parameter {name!r} must be a finite number", fs.get(k)))
            if bad:
                continue
            if fs.get("list"):
                errs.append(FieldError(f"{path}.feasibleSpace.list", "FieldValueForbidden", f"list is not allowed for {t} parameter {name!r}"))
            if lo is None or hi is None:
                errs.append(FieldError(f"{path}.feasibleSpace", "FieldValueRequired", f"min and max (numbers) are required for {t} parameter {name!r}"))
                continue
            if lo > hi:
                errs.append(FieldError(f"{path}.feasibleSpace.min", "FieldValueInvalid", f"min {fs.get('min')} is greater than max {fs.get('max')} for parameter {name!r}", fs.get("min")))
            if t == "int" and (lo != int(lo) or hi != int(hi)):
                errs.append(FieldError(f"{path}.feasibleSpace", "FieldValueInvalid", f"min and max of int parameter {name!r} must be integers"))
            step = fs.get("step")
            if step is not None and (_f(step) is None or _f(step) <= 0):
                errs.append(FieldError(f"{path}.feasibleSpace.step", "FieldValueInvalid", "step must be a positive number", step))
            dist = fs.get("distribution", "uniform")
            if dist not in ("uniform", "logUniform", "normal", "logNormal"):
                errs.append(FieldError(f"{path}.feasibleSpace.distribution", "FieldValueNotSupported", 'supported values: "uniform", "logUniform", "normal", "logNormal"', dist))
            elif dist in ("logUniform", "logNormal") and lo <= 0:
                errs.append(FieldError(f"{path}.feasibleSpace.min", "FieldValueInvalid", f"{dist} needs min > 0 for parameter {name!r}", fs.get("min")))
        elif t in ("categorical", "discrete"):
            for k in ("min", "max", "step"):
                if k in fs:
                    errs.append(FieldError(f"{path}.feasibleSpace.{k}", "FieldValueForbidden", f"{k} is not allowed for {t} parameter {name!r}"))
            if not fs.get("list"):
                errs.append(FieldError(f"{path}.feasibleSpace.list", "FieldValueRequired", f"list must not be empty for {t} parameter {name!r}"))
        else:
            errs.append(FieldError(f"{path}.parameterType", "FieldValueNotSupported", 'supported values: "int", "double", "categorical", "discrete"', t))
    return errs


def _validate_algorithm(spec: dict, params: list[dict]) -> list[FieldError]:
    algo = spec.get("algorithm") or {}
    name = algo.get("algorithmName")
    if name not in ALGORITHMS:
        return [FieldError("spec.algorithm.algorithmName", "FieldValueNotSupported", f"unknown algorithm {name!r}; supported: {', '.join(sorted(ALGORITHMS))}", name)]
    errs = []
    settings = {s.get("name"): s.get("value") for s in algo.get("algorithmSettings") or []}
    for msg_field, msg in ALGORITHMS[name].check(settings, spec, params):
        errs.append(FieldError(f"spec.algorithm.algorithmSettings{msg_field}", "FieldValueInvalid", msg))
    es = spec.get("earlyStopping")
    if es:
        ename = es.get("algorithmName")
        if ename not in EARLY_STOPPING:
            errs.append(FieldError("spec.earlyStopping.algorithmName", "FieldValueNotSupported", f"unknown early stopping algorithm {ename!r}; supported: medianstop", ename))
        else:
            for s in es.get("algorithmSettings") or []:
                check = EARLY_STOPPING[ename].get(s.get("name"))
                if check is None:
                    errs.append(FieldError("spec.earlyStopping.algorithmSettings", "FieldValueNotSupported", f"unknown setting {s.get('name')!r} for {ename}"))
                elif (m := check(s.get("value"))) is not None:
                    errs.append(FieldError("spec.earlyStopping.algorithmSettings", "FieldValueInvalid", f"{s.get('name')}: {m}"))
    return errs


def _validate_template(spec: dict, params: list[dict]) -> list[FieldError]:
    import json

    tt = spec.get("trialTemplate") or {}
    errs: list[FieldError] = []
    ts = tt.get("trialSpec")
    if not isinstance(ts, dict) or not ts.get("apiVersion") or not ts.get("kind"):
        return [FieldError("spec.trialTemplate.trialSpec", "FieldValueRequired", "trialSpec with apiVersion and kind is required (configMap templates are not supported)")]
    md = ts.get("metadata") or {}
    for k in ("name", "namespace"):
        if k in md:
            errs.append(FieldError(f"spec.trialTemplate.trialSpec.metadata.{k}", "FieldValueForbidden", f"metadata.{k} must not be set in the trial template"))
    if not tt.get("primaryContainerName"):
        errs.append(FieldError("spec.trialTemplate.primaryContainerName", "FieldValueRequired", "primaryContainerName is required"))
    if not tt.get("successCondition") or not tt.get("failureCondition"):
        errs.append(FieldError("spec.trialTemplate.successCondition", "FieldValueRequired", f"successCondition and failureCondition are required for kind {ts.get('kind')}"))
    pnames = {p.get("name") for p in params}
    tps = tt.get("trialParameters") or []
    defined = set()
    for i, tp in enumerate(tps):
        ref = tp.get("reference", "")
        if not tp.get("name"):
            errs.append(FieldError(f"spec.trialTemplate.trialParameters[{i}].name", "FieldValueRequired", "name is required"))
        defined.add(tp.get("name"))
        if ref not in pnames and not META_REF.match(ref or ""):
            errs.append(FieldError(f"spec.trialTemplate.trialParameters[{i}].reference", "FieldValueInvalid", f"reference {ref!r} is neither a parameter in spec.parameters nor a trial metadata reference", ref))
    for used in sorted(set(PARAM_REF.findall(json.dumps(ts)))):
        if used not in defined:
            errs.append(FieldError("spec.trialTemplate.trialSpec", "FieldValueInvalid", f"the template references ${{trialParameters.{used}}}, which is not defined in spec.trialTemplate.trialParameters"))
    for name in sorted(defined - set(PARAM_REF.findall(json.dumps(ts)))):
        errs.append(FieldError("spec.trialTemplate.trialParameters", "FieldValueInvalid", f"trial parameter {name!r} is not used in spec.trialTemplate.trialSpec"))
    return errs


def validate_experiment(exp: dict, old: dict | None) -> list[FieldError]:
    spec = exp.get("spec") or {}
    name = exp["metadata"].get("name", "")
    errs: list[FieldError] = []
    if old is not None:
        o = dict(old.get("spec") or {})
        n = dict(spec)
        for k in ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount"):
            o.pop(k, None)
            n.pop(k, None)
        if o != n:
            errs.append(FieldError("spec", "FieldValueForbidden", "only parallelTrialCount, maxTrialCount and maxFailedTrialCount may be changed"))
        conds = {c.get("type"): c for c in (old.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
        if (conds.get("Succeeded") or conds.get("Failed")) and spec != old.get("spec"):
            restartable = (conds.get("Succeeded") or {}).get("reason") == "ExperimentMaxTrialsReached" and spec.get("resumePolicy") in ("LongRunning", "FromVolume")
            if not restartable:
                errs.append(FieldError("spec", "FieldValueForbidden", "a completed experiment can only be restarted when it reached maxTrialCount and its resumePolicy is LongRunning or FromVolume"))
            elif (spec.get("maxTrialCount") or 0) <= int((old.get("status") or {}).get("trials", 0)):
                errs.append(FieldError("spec.maxTrialCount", "FieldValueInvalid", f"must be greater than the {old['status'].get('trials', 0)} trials already run to restart the experiment", spec.get("maxTrialCount")))
        return errs
    if len(name) > 40 or not NAME_RE.match(name):
        errs.append(FieldError("metadata.name", "FieldValueInvalid", "experiment name must match ^[a-z]([-a-z0-9]*[a-z0-9])? and be at most 40 characters", name))
    obj = spec.get("objective") or {}
    if obj.get("type") not in ("minimize", "maximize"):
        errs.append(FieldError("spec.objective.type", "FieldValueNotSupported", 'supported values: "minimize", "maximize"', obj.get("type")))
    if obj.get("objectiveMetricName") in (obj.get("additionalMetricNames") or []):
        errs.append(FieldError("spec.objective.additionalMetricNames", "FieldValueInvalid", "must not contain the objective metric"))
    mx, par, mf = spec.get("maxTrialCount"), spec.get("parallelTrialCount"), spec.get("maxFailedTrialCount")
    if mx is not None and par is not None and par > mx:
        errs.append(FieldError("spec.parallelTrialCount", "FieldValueInvalid", f"parallelTrialCount {par} must not exceed maxTrialCount {mx}", par))
    if mx is not None and mf is not None and mf > mx:
        errs.append(FieldError("spec.maxFailedTrialCount", "FieldValueInvalid", f"maxFailedTrialCount {mf} must not exceed maxTrialCount {mx}", mf))
    params = spec.get("parameters") or []
    nas = spec.get("nasConfig")
    algo = ALGORITHMS.get((spec.get("algorithm") or {}).get("algorithmName") or "")
    if nas:
        from ketch.tuning.algorithms import nas_space

        perrs = nas_space.validate(nas) + (validate_parameters(params) if params else [])
        if algo is not None and not getattr(algo, "nas", False):
            perrs.append(FieldError("spec.nasConfig", "FieldValueForbidden", f"algorithm {spec['algorithm']['algorithmName']!r} does not search architectures; nasConfig is for enas and darts"))
    else:
        perrs = validate_parameters(params)
        if algo is not None and getattr(algo, "nas", False):
            perrs.append(FieldError("spec.nasConfig", "FieldValueRequired", f"algorithm {spec['algorithm']['algorithmName']!r} needs spec.nasConfig"))
    errs.extend(perrs)
    if not perrs:
        errs.extend(_validate_algorithm(spec, params))
    errs.extend(_validate_template(spec, params + ([{"name": n} for n in NAS_PARAMETERS] if nas else [])))
    mc = spec.get("metricsCollectorSpec") or {}
    kind = (mc.get("collector") or {}).get("kind")
    if kind not in COLLECTORS:
        errs.append(FieldError("spec.metricsCollectorSpec.collector.kind", "FieldValueNotSupported", "supported values: " + ", ".join(f'"{c}"' for c in COLLECTORS), kind))
    if kind == "Custom":
        cc = (mc.get("collector") or {}).get("customCollector")
        if not isinstance(cc, dict) or not cc.get("image") or not (cc.get("command") or cc.get("args")):
            errs.append(FieldError("spec.metricsCollectorSpec.collector.customCollector", "FieldValueRequired",
                                   "a Custom collector needs customCollector, a container with image and command (it runs as a sidecar of the primary pod and pushes metrics)"))
    if kind == "TensorFlowEvent":
        fsp = (mc.get("source") or {}).get("fileSystemPath") or {}
        if not fsp.get("path") or fsp.get("kind", "Directory") != "Directory":
            errs.append(FieldError("spec.metricsCollectorSpec.source.fileSystemPath", "FieldValueRequired",
                                   "the TensorFlowEvent collector needs source.fileSystemPath with kind Directory and the path of the event files"))
    fmts = ((mc.get("source") or {}).get("filter") or {}).get("metricsFormat") or []
    for f in fmts:
        try:
            re.compile(f)
        except re.error as e:
            errs.append(FieldError("spec.metricsCollectorSpec.source.filter.metricsFormat", "FieldValueInvalid", f"invalid regex {f!r}: {e}"))
            continue
        if not TWO_GROUPS.match(f):
            errs.append(FieldError("spec.metricsCollectorSpec.source.filter.metricsFormat", "FieldValueInvalid", f"regex {f!r} must have two groups: metric name and value"))
    return errs


def grid_size(params: list[dict]) -> float:
    """How many points a grid over ``params`` has (inf when a double has no step)."""
    n = 1.0
    for p in params:
        fs = p.get("feasibleSpace") or {}
        if p.get("parameterType") in ("categorical", "discrete"):
            n *= len(fs.get("list") or [])
            continue
        step = _f(fs.get("step")) or (1.0 if p.get("parameterType") == "int" else None)
        lo, hi = _f(fs.get("min")), _f(fs.get("max"))
        if step is None or lo is None or hi is None or step <= 0:
            return math.inf
        n *= math.floor((hi - lo) / step + 1e-9) + 1
        if not math.isfinite(n):
            return math.inf
    return n
