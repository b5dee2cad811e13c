"""ENAS (Katib's ``enas``): an LSTM controller samples architectures and learns from trial rewards with REINFORCE.

As in Efficient Neural Architecture Search and Katib's ENAS suggestion: for each of ``numLayers`` layers the
controller picks an operation (logits divided by ``controller_temperature``, squashed by
``controller_tanh_const * tanh``) and, from the second layer on, which earlier layers feed it (skip
connections, by attention over the earlier layers' states). A trial's ``architecture`` is
``[[op], [op, skip0], [op, skip0, skip1], ...]``; its objective value (negated when minimizing) is the
reward. Each finished trial trains the controller ``controller_train_steps`` times on
``-(reward - baseline) * log p(architecture) - entropy_weight * entropy + skip_weight * KL(skips || skip_target)``
with Adam; the baseline is an exponential moving average (``controller_baseline_decay``).

State (controller, optimizer, baseline) lives in the per-experiment cache; after a restart of ketch it is
rebuilt by replaying the finished trials in order, which the log-probability of a given architecture allows.
Needs torch (the ``torch`` extra).
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from ketch.tuning.algorithms import nas_space
from ketch.tuning.algorithms.base import Algorithm, Entry, as_float, as_int, settings_of

DEFAULTS = {"controller_hidden_size": 64, "controller_temperature": 5.0, "controller_tanh_const": 2.25,
            "controller_entropy_weight": 1e-5, "controller_baseline_decay": 0.999, "controller_learning_rate": 5e-5,
            "controller_skip_target": 0.4, "controller_skip_weight": 0.8, "controller_train_steps": 50,
            "controller_log_every_steps": 10}


def _controller(num_ops: int, num_layers: int, s: dict) -> Any:
    import torch
    from torch import nn

    class Controller(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            h = int(s["controller_hidden_size"])
            self.hidden = h
            self.lstm = nn.LSTMCell(h, h)
            self.start = nn.Parameter(torch.zeros(1, h))
            self.op_emb = nn.Embedding(num_ops, h)
            self.op_head = nn.Linear(h, num_ops)
            self.attn_prev = nn.Linear(h, h, bias=False)
            self.attn_cur = nn.Linear(h, h, bias=False)
            self.attn_v = nn.Linear(h, 1, bias=False)

        def _squash(self, logits: Any) -> Any:
            return float(s["controller_tanh_const"]) * torch.tanh(logits / float(s["controller_temperature"]))

        def forward(self, arch: list[list[int]] | None = None, gen: Any = None) -> tuple[list[list[int]], Any, Any, Any]:
            """Sample an architecture (``arch`` None) or score a given one: (arch, log p, entropy, skip KL)."""
            h = c = torch.zeros(1, self.hidden)
            x = self.start
            anchors: list[Any] = []
            keys: list[Any] = []
            logp = ent = kl = torch.zeros(())
            out: list[list[int]] = []
            target = float(s["controller_skip_target"])
            for layer in range(num_layers):
                h, c = self.lstm(x, (h, c))
                probs = torch.softmax(self._squash(self.op_head(h)), -1)[0]
                op = arch[layer][0] if arch is not None else int(torch.multinomial(probs, 1, generator=gen))
                logp = logp + torch.log(probs[op] + 1e-12)
                ent = ent - (probs * torch.log(probs + 1e-12)).sum()
                h, c = self.lstm(self.op_emb(torch.tensor([op])), (h, c))
                row = [op]
                if layer > 0:
                    logit = self._squash(self.attn_v(torch.tanh(torch.cat(keys) + self.attn_cur(h))).squeeze(-1))
                    p_on = torch.sigmoid(logit)
                    if arch is not None:
                        skips = [int(v) for v in arch[layer][1:layer + 1]]
                    else:
                        skips = [int(v) for v in torch.bernoulli(p_on.detach(), generator=gen).tolist()]
                    sk = torch.tensor(skips, dtype=torch.float32)
                    logp = logp + (sk * torch.log(p_on + 1e-12) + (1 - sk) * torch.log(1 - p_on + 1e-12)).sum()
                    ent = ent - (p_on * torch.log(p_on + 1e-12) + (1 - p_on) * torch.log(1 - p_on + 1e-12)).sum()
                    kl = kl + (p_on * torch.log(p_on / target + 1e-12) + (1 - p_on) * torch.log((1 - p_on) / (1 - target) + 1e-12)).sum()
                    x = (sk.unsqueeze(0) @ torch.cat(anchors)) / (1.0 + sk.sum())
                    row += skips
                else:
                    x = self.start
                anchors.append(h)
                keys.append(self.attn_prev(h))
                out.append(row)
            return out, logp, ent, kl

    return Controller()


class ENAS(Algorithm):
    settings = {
        "controller_hidden_size": as_int(1), "controller_temperature": as_float(0, open_lo=True), "controller_tanh_const": as_float(0, open_lo=True),
        "controller_entropy_weight": as_float(0), "controller_baseline_decay": as_float(0, 1), "controller_learning_rate": as_float(0, 1, open_lo=True),
        "controller_skip_target": as_float(0, 1, open_lo=True, open_hi=True), "controller_skip_weight": as_float(0),
        "controller_train_steps": as_int(1), "controller_log_every_steps": as_int(1), "random_state": as_int(0),
    }
    nas = True

    def extra_checks(self, settings, spec, params):  # noqa: ANN001, ANN201
        out = []
        if not spec.get("nasConfig"):
            out.append(("", "enas needs spec.nasConfig (graphConfig and operations)"))
        if importlib.util.find_spec("torch") is None:
            out.append(("", "enas trains its controller with torch: pip install 'ketch[torch]'"))
        return out

    def _setup(self, exp: dict, cache: dict) -> None:
        import torch

        s = {**DEFAULTS, **settings_of(exp)}
        nas = exp["spec"]["nasConfig"]
        seed = int(s["random_state"]) if "random_state" in s else int(exp["metadata"]["uid"].replace("-", "")[:8], 16)
        torch.manual_seed(seed)
        ctrl = _controller(len(nas_space.operations(nas)), int(nas["graphConfig"]["numLayers"]), s)
        cache.update(ctrl=ctrl, opt=torch.optim.Adam(ctrl.parameters(), lr=float(s["controller_learning_rate"])),
                     gen=torch.Generator().manual_seed(seed), baseline=None, learned=set(), settings=s)

    def _learn(self, exp: dict, e: Entry, cache: dict) -> None:
        s = cache["settings"]
        reward = e.value if exp["spec"]["objective"]["type"] == "maximize" else -e.value  # type: ignore[operator]
        decay = float(s["controller_baseline_decay"])
        cache["baseline"] = reward if cache["baseline"] is None else decay * cache["baseline"] + (1 - decay) * reward
        arch = nas_space.parse_architecture(e.assignments["architecture"])
        for _ in range(int(s["controller_train_steps"])):
            _, logp, ent, kl = cache["ctrl"](arch)
            loss = -(reward - cache["baseline"]) * logp - float(s["controller_entropy_weight"]) * ent + float(s["controller_skip_weight"]) * kl
            cache["opt"].zero_grad()
            loss.backward()
            cache["opt"].step()

    def suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[dict[str, str]]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny LSTM: more threads only contend with the trials for the cores
        try:
            return self._suggest(exp, history, names, cache)
        finally:
            torch.set_num_threads(threads)

    def _suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[dict[str, str]]:
        import torch

        if "ctrl" not in cache:
            self._setup(exp, cache)
        for e in history:  # trial order: a rebuilt cache replays the same training
            if e.name in cache["learned"] or e.state == "running":
                continue
            cache["learned"].add(e.name)
            if e.state == "complete" and e.value is not None and math.isfinite(e.value) and "architecture" in e.assignments:
                self._learn(exp, e, cache)
        cfg = nas_space.nn_config(exp["spec"]["nasConfig"])
        out = []
        with torch.no_grad():
            for _ in names:
                arch, _, _, _ = cache["ctrl"](gen=cache["gen"])
                out.append({"architecture": nas_space.architecture(arch), "nn_config": cfg})
        return out


ALGORITHMS = {"enas": ENAS()}
