"""CRDs and objects in the shapes the training and tuning operators write, for dashboard tests and the
benchmark while those operators' own CRDs are not on this branch (applying them again is harmless)."""

from __future__ import annotations

import json


def crd(group: str, version: str, kind: str, plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                 "versions": [{"name": version, "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


TRAINING_CRDS = [crd("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs")]
TUNING_CRDS = [crd("kubeflow.org", "v1beta1", "Experiment", "experiments"), crd("kubeflow.org", "v1beta1", "Trial", "trials")]


def install(ketch, crds: list[dict]) -> None:
    """Apply CRDs unless the server already serves them (an operator's branch may install its own)."""
    with ketch.http() as c:
        for d in crds:
            g, plural = d["spec"]["group"], d["spec"]["names"]["plural"]
            v = d["spec"]["versions"][0]["name"]
            if c.get(f"/apis/{g}/{v}").status_code == 200 and any(r["name"] == plural for r in c.get(f"/apis/{g}/{v}").json()["resources"]):
                continue
            r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=d)
            assert r.status_code == 201, r.text
    for d in crds:
        ketch.kubectl("wait", "--for=condition=Established", f"crd/{d['metadata']['name']}")


def experiment(name: str, ns: str = "default", max_trials: int = 12) -> dict:
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name, "namespace": ns},
            "spec": {"objective": {"type": "maximize", "goal": 0.99, "objectiveMetricName": "accuracy"},
                     "algorithm": {"algorithmName": "random"}, "maxTrialCount": max_trials, "parallelTrialCount": 3,
                     "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.001", "max": "0.1"}},
                                    {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "5"}},
                                    {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}}],
                     "trialTemplate": {"primaryContainerName": "training",
                                       "trialParameters": [{"name": "lr", "reference": "lr"}],
                                       "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "training", "image": "python:3.11", "command": ["python", "-c", "print('accuracy=0.5')", "${trialParameters.lr}"]}]}}}}}}}


def trial(exp: str, i: int, ns: str = "default", acc: float | None = None) -> dict:
    lr = 0.001 + (i * 37 % 100) / 1000
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
            "metadata": {"name": f"{exp}-{i:04d}", "namespace": ns, "labels": {"katib.kubeflow.org/experiment": exp}},
            "spec": {"objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
                     "parameterAssignments": [{"name": "lr", "value": f"{lr:.4f}"}, {"name": "layers", "value": str(1 + i % 5)},
                                              {"name": "optimizer", "value": ["sgd", "adam"][i % 2]}]},
            **({"status": trial_status(acc)} if acc is not None else {})}


def trial_status(acc: float | None) -> dict:
    if acc is None:
        return {"conditions": [{"type": "Running", "status": "True", "reason": "TrialRunning"}]}
    return {"conditions": [{"type": "Succeeded", "status": "True", "reason": "TrialSucceeded"}],
            "observation": {"metrics": [{"name": "accuracy", "latest": str(acc), "min": str(acc), "max": str(acc)}]}}


def acc_of(i: int) -> float:
    return round(0.6 + 0.35 * ((i * 7919) % 101) / 100, 4)


def pytorchjob(name: str, ns: str = "default", workers: int = 2) -> dict:
    tmpl = {"spec": {"containers": [{"name": "pytorch", "image": "python", "command": ["python", "-c", "print('hi')"]}]}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name, "namespace": ns},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": tmpl},
                                             "Worker": {"replicas": workers, "restartPolicy": "OnFailure", "template": tmpl}}}}


def dumps(o: dict) -> str:
    return json.dumps(o)
