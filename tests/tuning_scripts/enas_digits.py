"""An ENAS trial: build the network ``--architecture`` / ``--nn_config`` describe (Katib's ENAS format) over
scikit-learn's 8x8 digits, train it briefly with a fixed seed, print ``Validation-Accuracy=<acc>``.

Layer l applies its operation (``convolution``: filter_size x filter_size, num_filter filters, back to the
stem's width with a 1x1; ``reduction``: max/avg pooling of pool_size, stride 1, shape kept) to the previous
layer's output plus the earlier layers its skip bits select. A stem conv widens the image to C channels;
global average pooling and a linear layer classify."""

import argparse
import json

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

C = 12
ap = argparse.ArgumentParser()
ap.add_argument("--architecture", required=True)
ap.add_argument("--nn_config", required=True)
ap.add_argument("--epochs", type=int, default=4)
a = ap.parse_args()
arch = json.loads(a.architecture.replace("'", '"'))
cfg = json.loads(a.nn_config.replace("'", '"'))
assert len(arch) == cfg["num_layers"], (arch, cfg["num_layers"])


def make(op: dict) -> nn.Module:
    p = op["opt_params"]
    if op["opt_type"] == "convolution":
        k, f = int(p["filter_size"]), int(p["num_filter"])
        return nn.Sequential(nn.Conv2d(C, f, k, padding=k // 2), nn.ReLU(), nn.Conv2d(f, C, 1), nn.BatchNorm2d(C))
    if op["opt_type"] == "reduction":
        k = int(p["pool_size"])
        pool = nn.MaxPool2d if p["reduction_type"] == "max_pooling" else nn.AvgPool2d
        return nn.Sequential(nn.ZeroPad2d((k // 2, (k - 1) // 2, k // 2, (k - 1) // 2)), pool(k, stride=1))
    raise SystemExit(f"unknown operation type {op['opt_type']!r}")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, C, 3, padding=1), nn.ReLU())
        self.ops = nn.ModuleList(make(cfg["embedding"][str(row[0])]) for row in arch)
        self.head = nn.Linear(C, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.stem(x)]
        for layer, row in enumerate(arch):
            inp = outs[-1] + sum((outs[1 + j] for j, on in enumerate(row[1:layer + 1]) if on and j + 1 < len(outs) - 0), torch.zeros_like(outs[-1]))
            outs.append(torch.relu(self.ops[layer](inp)))
        return self.head(outs[-1].mean((2, 3)))


torch.set_num_threads(1)  # trials run side by side on a few cores
torch.manual_seed(0)
X, y = load_digits(return_X_y=True)
Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
t = lambda v, dt=torch.float32: torch.tensor(v, dtype=dt)  # noqa: E731
Xtr, Xte, ytr, yte = t(Xtr).view(-1, 1, 8, 8), t(Xte).view(-1, 1, 8, 8), t(ytr, torch.long), t(yte, torch.long)
net = Net()
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for _ in range(a.epochs):
    perm = torch.randperm(len(Xtr))
    for i in range(0, len(Xtr), 64):
        idx = perm[i:i + 64]
        opt.zero_grad()
        nn.functional.cross_entropy(net(Xtr[idx]), ytr[idx]).backward()
        opt.step()
net.eval()
with torch.no_grad():
    acc = (net(Xte).argmax(1) == yte).float().mean().item()
print(f"architecture={a.architecture}")
print(f"Validation-Accuracy={acc:.4f}", flush=True)
