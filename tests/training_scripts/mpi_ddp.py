"""torch DDP started by ``mpirun`` in an MPIJob, as mpi-operator users run it: the rank and world size come
from OpenMPI's OMPI_COMM_WORLD_* variables, the rendezvous from MASTER_ADDR/MASTER_PORT (which ketch sets in
the MPIJob's Pods; users of mpi-operator pass their own with ``mpirun -x``). Every rank allreduces rank+1 over gloo, trains one DDP step, and prints what it got."""

import os

import torch
import torch.distributed as dist

rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=size)
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t, op=dist.ReduceOp.SUM)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 1))
model(torch.ones(1, 2) * (rank + 1)).sum().backward()  # DDP averages the gradients across ranks
grad = float(model.module.bias.grad.item())
print(f"ddp rank={rank} size={size} sum={int(t.item())} biasgrad={grad:.3f} pod={os.environ.get('KETCH_POD_NAME')}", flush=True)
dist.destroy_process_group()
