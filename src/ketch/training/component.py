"""The training component: Kubeflow Training Operator v1 kinds and Trainer v2 TrainJob.

Registers admission validators for the v1 job kinds, installs the runtimes ketch ships and the ConfigMap
the ``kubeflow`` SDK reads, and starts one controller per framework plus the TrainJob controller.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

import ketch.training as pkg
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError
from ketch.runtime import start_controllers
from ketch.training.frameworks import all_frameworks
from ketch.training.frameworks.base import GROUP
from ketch.training.validation import validator_for

log = logging.getLogger(__name__)
TRAINER_VERSION = "v2.3.0"


def setup(ctx: Context) -> None:
    for fw in all_frameworks():
        ctx.api.add_validator(GROUP, fw.kind, validator_for(fw))
    _install_defaults(ctx)
    start_controllers(ctx, pkg.__name__, pkg.__path__)


def _create_absent(ctx: Context, obj: dict) -> None:
    rd = ctx.api.rd(obj["apiVersion"], obj["kind"])
    md = obj["metadata"]
    if ctx.api.try_get(rd, md.get("namespace", ""), md["name"]) is not None:
        return
    try:
        ctx.api.create(rd, md.get("namespace", ""), obj)
    except StatusError as e:
        log.warning("could not install %s %s: %s", obj["kind"], md["name"], e.message)


def _install_defaults(ctx: Context) -> None:
    _create_absent(ctx, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow-system"}})
    _create_absent(ctx, {"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "kubeflow-trainer-public", "namespace": "kubeflow-system"},
                         "data": {"kubeflow_trainer_version": TRAINER_VERSION}})
    with open(Path(__file__).parent / "runtimes.yaml") as f:
        for doc in yaml.safe_load_all(f):
            if doc:
                _create_absent(ctx, doc)
