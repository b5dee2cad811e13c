"""A DARTS trial (Katib's darts algorithm hands out one): search a supernet over scikit-learn's 8x8 digits.

Reads ``--algorithm-settings`` (num_epochs, w_lr, w_lr_min, w_momentum, w_weight_decay, w_grad_clip,
alpha_lr, alpha_weight_decay, batch_size, init_channels), ``--search-space`` (operation names) and
``--num-layers``. Each layer is a mixed operation: the softmax of its architecture weights (alpha) mixes
every candidate. First-order DARTS alternates an Adam step on alpha over a held-out half of the training
data with an SGD step on the network weights over the other half. The genotype is each layer's strongest
operation; the derived network (those operations only) is then trained on all the training data and
scored on the test split: ``Best-Genotype=[...]`` and ``Validation-Accuracy=<acc>``."""

import argparse
import json
import math

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument("--algorithm-settings", required=True)
ap.add_argument("--search-space", required=True)
ap.add_argument("--num-layers", type=int, required=True)
a = ap.parse_args()
S = json.loads(a.algorithm_settings.replace("'", '"'))
OPS = json.loads(a.search_space.replace("'", '"'))
C = int(S["init_channels"])


def make(name: str) -> nn.Module:
    if name == "skip_connection":
        return nn.Identity()
    kind, _, size = name.rpartition("_")
    k = int(size.split("x")[0])
    if kind == "separable_convolution":
        return nn.Sequential(nn.Conv2d(C, C, k, padding=k // 2, groups=C), nn.Conv2d(C, C, 1), nn.BatchNorm2d(C), nn.ReLU())
    if kind == "dilated_convolution":
        return nn.Sequential(nn.Conv2d(C, C, k, padding=k - 1, dilation=2), nn.BatchNorm2d(C), nn.ReLU())
    if kind == "convolution":
        return nn.Sequential(nn.Conv2d(C, C, k, padding=k // 2), nn.BatchNorm2d(C), nn.ReLU())
    if kind in ("max_pooling", "avg_pooling"):
        return (nn.MaxPool2d if kind == "max_pooling" else nn.AvgPool2d)(k, stride=1, padding=k // 2)
    raise SystemExit(f"unknown operation {name!r}")


class Net(nn.Module):
    def __init__(self, layers: list[list[str]]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU())
        self.layers = nn.ModuleList(nn.ModuleList(make(o) for o in ops) for ops in layers)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(layers), len(layers[0])))
        self.head = nn.Linear(C, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer, ops in enumerate(self.layers):
            w = torch.softmax(self.alpha[layer], -1) if len(ops) > 1 else torch.ones(1)
            x = sum(wi * op(x) for wi, op in zip(w, ops, strict=True))
        return self.head(x.mean((2, 3)))


def fit(net: Net, X: torch.Tensor, y: torch.Tensor, epochs: int, Xa: torch.Tensor | None = None, ya: torch.Tensor | None = None) -> None:
    weights = [p for n, p in net.named_parameters() if n != "alpha"]
    wopt = torch.optim.SGD(weights, lr=float(S["w_lr"]), momentum=float(S["w_momentum"]), weight_decay=float(S["w_weight_decay"]))
    aopt = torch.optim.Adam([net.alpha], lr=float(S["alpha_lr"]), betas=(0.5, 0.999), weight_decay=float(S["alpha_weight_decay"]))
    bs, steps = int(S["batch_size"]), max(1, math.ceil(len(X) / int(S["batch_size"])))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(wopt, epochs * steps, eta_min=float(S["w_lr_min"]))
    for _ in range(epochs):
        perm = torch.randperm(len(X))
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            if Xa is not None:  # first-order DARTS: the architecture step on held-out data
                j = torch.randint(len(Xa), (len(idx),))
                aopt.zero_grad()
                nn.functional.cross_entropy(net(Xa[j]), ya[j]).backward()
                aopt.step()
            wopt.zero_grad()
            nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
            nn.utils.clip_grad_norm_(weights, float(S["w_grad_clip"]))
            wopt.step()
            sched.step()


torch.set_num_threads(1)
torch.manual_seed(0)
X, y = load_digits(return_X_y=True)
Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
t = lambda v, dt=torch.float32: torch.tensor(v, dtype=dt)  # noqa: E731
Xtr, Xte, ytr, yte = t(Xtr).view(-1, 1, 8, 8), t(Xte).view(-1, 1, 8, 8), t(ytr, torch.long), t(yte, torch.long)
half = len(Xtr) // 2
supernet = Net([OPS] * a.num_layers)
fit(supernet, Xtr[:half], ytr[:half], int(S["num_epochs"]), Xtr[half:], ytr[half:])
genotype = [OPS[int(i)] for i in supernet.alpha.argmax(-1)]
print("alphas=" + json.dumps([[round(v, 3) for v in row] for row in torch.softmax(supernet.alpha, -1).tolist()]))
derived = Net([[g] for g in genotype])
fit(derived, Xtr, ytr, int(S["num_epochs"]))
derived.eval()
with torch.no_grad():
    acc = (derived(Xte).argmax(1) == yte).float().mean().item()
print(f"Best-Genotype={json.dumps(genotype)}")
print(f"Validation-Accuracy={acc:.4f}", flush=True)
