"""DARTS (Katib's ``darts``): one trial that searches the whole supernet by gradient descent.

As Katib's DARTS suggestion does, the algorithm hands out a single trial whose parameters describe the
search to its trainer: ``search-space`` (the operation names built from ``nasConfig``: operationType plus
``_KxK`` for each ``filter_size``, e.g. ``separable_convolution_3x3``, ``max_pooling_3x3``, or the bare type
for ``skip_connection``), ``num-layers``, and ``algorithm-settings`` (Katib's DARTS settings with their
defaults, as a dict with ``'`` quotes). The trainer (the trial's program) trains architecture weights and
network weights together and prints the best genotype; the search space is exhausted after that trial.
"""

from __future__ import annotations

import json
from typing import Any

from ketch.tuning.algorithms.base import Algorithm, Entry, as_float, as_int, settings_of

DEFAULTS: dict[str, Any] = {"num_epochs": 50, "w_lr": 0.025, "w_lr_min": 0.001, "w_momentum": 0.9, "w_weight_decay": 3e-4,
                            "w_grad_clip": 5.0, "alpha_lr": 3e-4, "alpha_weight_decay": 1e-3, "batch_size": 128,
                            "num_workers": 4, "init_channels": 16, "print_step": 50, "num_nodes": 4, "stem_multiplier": 3}


def search_space(nas: dict) -> list[str]:
    out = []
    for op in nas.get("operations") or []:
        t = op["operationType"]
        sizes = [v for p in op.get("parameters") or [] if p.get("name") == "filter_size"
                 for v in ((p.get("feasibleSpace") or {}).get("list") or [])]
        out += [f"{t}_{k}x{k}" for k in sizes] if sizes else [t]
    return out


class DARTS(Algorithm):
    settings = {"num_epochs": as_int(1), "w_lr": as_float(0, open_lo=True), "w_lr_min": as_float(0), "w_momentum": as_float(0),
                "w_weight_decay": as_float(0), "w_grad_clip": as_float(0), "alpha_lr": as_float(0, open_lo=True),
                "alpha_weight_decay": as_float(0), "batch_size": as_int(1), "num_workers": as_int(0), "init_channels": as_int(1),
                "print_step": as_int(1), "num_nodes": as_int(1), "stem_multiplier": as_int(1)}
    nas = True

    def extra_checks(self, settings, spec, params):  # noqa: ANN001, ANN201
        if not spec.get("nasConfig"):
            return [("", "darts needs spec.nasConfig (graphConfig and operations)")]
        return []

    def exhausted(self, exp: dict, history: list[Entry]) -> bool | None:
        return len(history) >= 1

    def suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[dict[str, str]]:
        if history or not names:
            return []
        nas = exp["spec"]["nasConfig"]
        settings = {**DEFAULTS, **{k: v for k, v in settings_of(exp).items()}}
        return [{"algorithm-settings": json.dumps(settings).replace('"', "'"),
                 "search-space": json.dumps(search_space(nas)).replace('"', "'"),
                 "num-layers": str(int((nas.get("graphConfig") or {}).get("numLayers", 1)))}]


ALGORITHMS = {"darts": DARTS()}
