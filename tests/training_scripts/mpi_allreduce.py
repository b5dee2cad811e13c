"""An MPI program for an MPIJob: every rank adds rank+1 with an allreduce and prints the sum it got,
the world size and the Pod it ran in (KETCH_POD_NAME of the container that hosts it)."""

import os

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
total = comm.allreduce(rank + 1, op=MPI.SUM)
print(f"rank={rank} size={size} sum={total} pod={os.environ.get('KETCH_POD_NAME')}", flush=True)
