"""``tune(fn, space)``: tune a Python function on a running ketch in a few lines, with a live terminal view.

Why: the Katib route (an Experiment YAML with a trial template) and the kubeflow SDK route (a TrainJob
runtime) are both heavy for "try 20 learning rates of this function". ``tune`` builds the Experiment for
you: each trial is a ``batch/v1`` Job whose container runs the function's source with the suggested
arguments and prints what it returns as ``name=value`` (collected by the StdOut collector), so the trials are
real processes, scheduled, recorded and visible like any other Experiment (``kubectl get trials``).
The function must be self-contained (imports inside it), as for the kubeflow SDK's CustomTrainer.
"""

from __future__ import annotations

import inspect
import random
import string
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import httpx

GROUP = "/apis/kubeflow.org/v1beta1"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"

# Runs in the trial: the function's source, the suggested values (strings after substitution) converted back,
# and its return value printed for the StdOut collector.
RUNNER = """
{source}
_types = {types!r}
_choices = {choices!r}
_raw = {raw}
_kw = {{k: (_choices[k][v] if k in _choices else int(float(v)) if _types[k] == "int" else float(v)) for k, v in _raw.items()}}
_out = {name}(**_kw)
if isinstance(_out, dict):
    for _k, _v in _out.items():
        print(f"{{_k}}={{float(_v)}}", flush=True)
elif _out is not None:
    print(f"{objective}={{float(_out)}}", flush=True)
"""


def _parameter(name: str, spec: Any) -> tuple[dict, str, dict | None]:
    """(Katib ParameterSpec, python type, categorical mapping) from ``(lo, hi)``, ``(lo, hi, "log")`` or a list."""
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"space[{name!r}]: an empty list of choices")
        mapping = {str(v): v for v in spec}
        if any(not k or any(ch in k for ch in "\"\\\n$") for k in mapping):
            raise ValueError(f"space[{name!r}]: choices must print as plain text (no quotes, backslashes, '$')")
        return {"name": name, "parameterType": "categorical", "feasibleSpace": {"list": list(mapping)}}, "categorical", mapping
    if isinstance(spec, tuple) and len(spec) in (2, 3) and all(isinstance(v, int | float) for v in spec[:2]):
        lo, hi = spec[0], spec[1]
        log = len(spec) == 3 and spec[2] == "log"
        if len(spec) == 3 and not log:
            raise ValueError(f"space[{name!r}]: the third item may only be 'log'")
        kind = "int" if isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool) else "double"
        fs = {"min": str(lo), "max": str(hi), "distribution": "logUniform" if log else "uniform"}
        return {"name": name, "parameterType": kind, "feasibleSpace": fs}, kind, None
    raise ValueError(f"space[{name!r}]: expected (min, max), (min, max, 'log') or a list of choices, got {spec!r}")


def experiment_for(fn: Callable, space: dict[str, Any], *, name: str, objective: str = "loss", direction: str = "minimize",
                   max_trials: int = 10, parallel: int = 2, algorithm: str = "tpe", random_state: int | None = None,
                   python: str = sys.executable) -> dict:
    """The Experiment ``tune`` submits (exposed so it can be inspected or applied by hand)."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction: expected 'minimize' or 'maximize', got {direction!r}")
    if not space:
        raise ValueError("space: at least one parameter is needed")
    params, types, choices = [], {}, {}
    for k, v in space.items():
        p, t, m = _parameter(k, v)
        params.append(p)
        types[k] = t
        if m is not None:
            choices[k] = m
    raw = "{" + ", ".join(f'{k!r}: "${{trialParameters.{k}}}"' for k in space) + "}"
    script = RUNNER.format(source=textwrap.dedent(inspect.getsource(fn)), types=types, choices=choices, raw=raw,
                           name=fn.__name__, objective=objective)
    settings = [{"name": "random_state", "value": str(random_state)}] if random_state is not None else []
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name}, "spec": {
        "objective": {"type": direction, "objectiveMetricName": objective},
        "algorithm": {"algorithmName": algorithm, **({"algorithmSettings": settings} if settings else {})},
        "maxTrialCount": max_trials, "parallelTrialCount": min(parallel, max_trials), "maxFailedTrialCount": max_trials,
        "parameters": params,
        "trialTemplate": {
            "primaryContainerName": "main",
            "trialParameters": [{"name": k, "reference": k} for k in space],
            "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "python", "command": [python, "-c", script]}]}}}},
        },
    }}


def _table(exp: dict, trials: list[dict], objective: str) -> Any:
    from rich.table import Table

    st = exp.get("status") or {}
    best = ((st.get("currentOptimalTrial") or {}).get("bestTrialName")) or ""
    cond = (st.get("conditions") or [{}])[-1].get("type", "Created")
    t = Table(title=f"{exp['metadata']['name']}: {cond}  {st.get('trialsSucceeded', 0)}/{exp['spec']['maxTrialCount']} succeeded"
                    f"  best: {best or '-'}")
    t.add_column("trial")
    t.add_column("parameters")
    t.add_column("state")
    t.add_column(objective, justify="right")
    for tr in sorted(trials, key=lambda x: x["metadata"].get("creationTimestamp", "")):
        params = ", ".join(f"{a['name']}={a['value']}" for a in tr["spec"].get("parameterAssignments") or [])
        state = ((tr.get("status") or {}).get("conditions") or [{}])[-1].get("type", "Pending")
        metric = next((m.get("latest", "") for m in ((tr.get("status") or {}).get("observation") or {}).get("metrics") or []
                       if m.get("name") == objective), "")
        name = tr["metadata"]["name"]
        t.add_row(("* " if name == best else "") + name, params, state, str(metric), style="bold green" if name == best else None)
    return t


def tune(fn: Callable, space: dict[str, Any], *, objective: str = "loss", direction: str = "minimize", max_trials: int = 10,
         parallel: int = 2, algorithm: str = "tpe", random_state: int | None = None, url: str | None = None,
         namespace: str = "default", name: str | None = None, progress: bool = True, console: Any = None,
         timeout: float = 3600, poll: float = 0.5, token: str | None = None) -> dict:
    """Tune ``fn`` on the ketch at ``url`` (found as the ``ketch`` CLI finds it: ``$KETCH_SERVER``, the
    kubeconfig, http://127.0.0.1:8080; ``token`` likewise); returns
    ``{"experiment", "status", "parameters", "value", "trials"}``.

    ``space`` maps each keyword of ``fn`` to ``(min, max)`` (ints give an int parameter), ``(min, max, "log")``
    or a list of choices. ``fn`` returns the objective (a number) or a dict of metrics. With ``progress`` a
    rich table of the trials updates live until the Experiment finishes."""
    from ketch.machinery.connect import resolve

    conn = resolve(url)
    url, token = conn.server, token or conn.token
    name = name or f"{fn.__name__.replace('_', '-').lower()[:40]}-{''.join(random.choices(string.ascii_lowercase + string.digits, k=5))}"
    exp = experiment_for(fn, space, name=name, objective=objective, direction=direction, max_trials=max_trials,
                         parallel=parallel, algorithm=algorithm, random_state=random_state)
    base = f"{GROUP}/namespaces/{namespace}"
    with httpx.Client(base_url=url, timeout=30, verify=conn.verify, headers={"Authorization": f"Bearer {token}"} if token else {}) as h:
        r = h.post(f"{base}/experiments", json=exp)
        if r.status_code >= 400:
            raise ValueError(f"ketch refused the Experiment: {r.json().get('message', r.text)}")

        def state() -> tuple[dict, list[dict]]:
            e = h.get(f"{base}/experiments/{name}").raise_for_status().json()
            ts = h.get(f"{base}/trials", params={"labelSelector": f"{EXPERIMENT_LABEL}={name}"}).raise_for_status().json()["items"]
            return e, ts

        def finished(e: dict) -> str | None:
            for c in (e.get("status") or {}).get("conditions") or []:
                if c.get("type") in ("Succeeded", "Failed") and c.get("status") == "True":
                    return c["type"]
            return None

        deadline = time.monotonic() + timeout
        live = None
        if progress:
            from rich.console import Console
            from rich.live import Live

            live = Live(console=console or Console(), refresh_per_second=4, transient=False)
            live.start()
        try:
            while True:
                e, ts = state()
                if live is not None:
                    live.update(_table(e, ts, objective), refresh=True)
                done = finished(e)
                if done:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Experiment {namespace}/{name} did not finish in {timeout}s")
                time.sleep(poll)
        finally:
            if live is not None:
                live.stop()
    best = (e.get("status") or {}).get("currentOptimalTrial") or {}
    value = next((float(m["latest"]) for m in (best.get("observation") or {}).get("metrics") or []
                  if m.get("name") == objective and m.get("latest") not in (None, "unavailable")), None)
    conv = {p["name"]: p for p in exp["spec"]["parameters"]}
    params = {}
    for a in best.get("parameterAssignments") or []:
        p = conv.get(a["name"])
        if p is None:
            continue
        if p["parameterType"] == "categorical":
            params[a["name"]] = next(v for v in space[a["name"]] if str(v) == a["value"])
        else:
            params[a["name"]] = int(float(a["value"])) if p["parameterType"] == "int" else float(a["value"])
    return {"experiment": name, "status": done, "parameters": params, "value": value, "trials": ts}
