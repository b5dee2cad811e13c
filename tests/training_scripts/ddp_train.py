"""PyTorch DDP over gloo, wired only by the env a PyTorchJob (or torchrun) sets: trains a small linear
model on this rank's shard, then checks every rank ends with the same parameters."""

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")  # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
rank, world = dist.get_rank(), dist.get_world_size()
assert world == int(os.environ["WORLD_SIZE"]), (world, os.environ["WORLD_SIZE"])
torch.manual_seed(0)
model = DDP(torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
g = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard
true_w = torch.arange(8, dtype=torch.float32).unsqueeze(1) / 8
losses = []
for _step in range(int(os.environ.get("STEPS", "30"))):
    x = torch.randn(64, 8, generator=g)
    y = x @ true_w + 0.5
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(world)]
dist.all_gather(gathered, flat)
in_sync = all(torch.equal(gathered[0], t) for t in gathered)
print(f"rank={rank} world={world} first_loss={losses[0]:.4f} last_loss={losses[-1]:.4f} in_sync={in_sync} "
      f"checksum={flat.sum().item():.6f}", flush=True)
dist.destroy_process_group()
raise SystemExit(0 if in_sync and losses[-1] < losses[0] else 3)
