"""Data-parallel training over MPI: the same run on 1, 2 or N processes and machines.

**The idea.** One SGD step on a global batch B of the mean loss
``L(theta) = 1/|B| sum_{i in B} l_i(theta)`` needs the gradient ``g = grad L``. Cut B into
shares B_1..B_N, one per process (*rank*), and let rank r compute the gradient of its own
mean loss ``L_r = 1/|B_r| sum_{i in B_r} l_i``. Then::

    g = sum_r w_r * grad L_r        with w_r = |B_r| / |B|   (1/N for equal shares)

One *allreduce* (every rank contributes ``w_r * grad L_r``, every rank receives the sum)
gives each rank the same g. Ranks that start from the same parameters (rank 0's,
broadcast at the start) and apply the same update to the same g stay identical, step
after step: N copies of one model, each seeing 1/N of every batch. Compute per rank
shrinks by N; the price is the allreduce, which an MPI library does as a *ring*: each
rank sends and receives ``2 (N - 1) / N`` times the gradient's bytes, nearly independent
of N (docs/distributed.md turns that into a cost model).

**The code, in reading order.**

1. :mod:`~tinyae.distributed.group`: the ranks (MPI through mpi4py), and waits that poll
   so that a dead rank is named instead of hanging the others.
2. :func:`~tinyae.distributed.ddp.allreduce_gradients`: the plain reference. After
   ``loss.backward()``, one allreduce of all gradients packed into one array.
3. :class:`~tinyae.distributed.ddp.DistributedDataParallel`: the same sum, cut into
   buckets that start as soon as backward has finished their gradients, so the network
   works while backward goes on (PyTorch's DDP).
4. :mod:`~tinyae.distributed.sampler`: rank r takes rows r, r + N, ... of every global
   batch, and draws the global batch's noise keeping its rows, so N ranks replay the
   one-process run (to float rounding) and ``--resume`` stays exact.
5. :mod:`~tinyae.distributed.sync_bn`: BatchNorm whose batch statistics span all ranks.
6. :mod:`~tinyae.distributed.training`: the hooks of the training loop and ``--workers``.

**Use.** ``mpiexec -n 4 tinyae train conv-ae`` (or ``tinyae train conv-ae --workers 4``)
trains with the global batch of ``--batch-size`` split over 4 ranks. In a script::

    from tinyae import distributed as dist
    dist.init_process_group()                      # under mpiexec; rank/size from MPI
    ddp = dist.DistributedDataParallel(model)      # broadcasts rank 0's weights
    loader = dist.ShardedLoader(DataLoader(data, batch_size=B, shuffle=True, seed=0))
    for x, _ in loader:
        opt.zero_grad(); loss_fn(ddp(x), x).backward(); opt.step()   # grads averaged in backward

``pip install "tinyae[mpi]"`` brings mpi4py and MPICH (the ``mpich`` wheel, with its
``mpiexec``): no system MPI needed. On a cluster, use the site's MPI with its mpi4py.
"""

from tinyae.distributed.ddp import DistributedDataParallel, allreduce_gradients, broadcast_module, synchronize
from tinyae.distributed.group import (
    DistributedError,
    ProcessGroup,
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_initialized,
)
from tinyae.distributed.sampler import DistributedSampler, ShardedLoader, sharded_draws
from tinyae.distributed.sync_bn import SyncBatchNorm, convert_sync_batchnorm

__all__ = [
    "DistributedDataParallel",
    "DistributedError",
    "DistributedSampler",
    "ProcessGroup",
    "ShardedLoader",
    "SyncBatchNorm",
    "allreduce_gradients",
    "broadcast_module",
    "convert_sync_batchnorm",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_initialized",
    "sharded_draws",
    "synchronize",
]
