"""The process group: who the ranks are, and collectives that cannot hang forever.

One :class:`ProcessGroup` wraps an MPI communicator (``mpi4py``). Every wait in
tinyae.distributed goes through :meth:`ProcessGroup.wait`, which polls instead of
blocking, so that a rank whose partner died finds out:

* every second it checks the peers that run on its own machine (their process ids were
  exchanged at start): a peer that is gone is named at once, ``rank 1 (pid 4242 on
  node7) is gone``;
* after ``timeout`` seconds without progress it gives up and names the operation (a peer
  on another machine cannot be checked directly; a lost network looks the same).

Either way it raises :class:`DistributedError`; the training loop then prints it and
calls ``MPI_Abort``, which stops every rank. Often MPICH's ``mpiexec`` is faster: as soon
as a rank dies it kills the others and prints the dead process's pid (the table of ranks
and pids is printed at start; ``tinyae train --workers N`` turns the pid into the rank).
The watchdog is for what the launcher does not see: a rank that hangs, or a launcher
that keeps waiting for a process that is gone.

GPU arrays (CuPy) are reduced with NCCL (``cupy.cuda.nccl``) when it is there, else
copied through the host (see :class:`_NcclComm`); CPU arrays go through MPI.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import time
from typing import Any

import numpy as np

from tinyae import backend

__all__ = [
    "DistributedError",
    "ProcessGroup",
    "default_group",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_initialized",
    "launched_rank",
    "launched_world_size",
    "mpi",
]

#: seconds a wait may see no progress before it fails (``TINYAE_DIST_TIMEOUT`` overrides it).
#: Long, because rank 0 alone evaluates and draws pictures while the others wait.
DEFAULT_TIMEOUT = 1800.0
_CHECK_EVERY = 1.0  # seconds between checks that the peers on this machine are alive

# Variables that process managers set in each rank: MPICH/Intel MPI (hydra), Open MPI, PMIx, Slurm.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")


class DistributedError(RuntimeError):
    """A rank died, a wait timed out, or the ranks disagree; the message says which."""


def mpi() -> Any:
    """``mpi4py.MPI``, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            f"tinyae.distributed needs mpi4py and an MPI library ({exc}); "
            'install them with: pip install "tinyae[mpi]"  (mpi4py and the mpich wheel)'
        ) from None
    return MPI


def launched_world_size() -> int:
    """How many ranks the process manager says it started (1 when not started by one).

    Read from the environment, without initialising MPI, so that a plain single-process
    run never loads an MPI library.
    """
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def launched_rank() -> int:
    """This process's rank as the process manager set it (0 when not started by one)."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` on this machine still runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(pid, 0) is all we know


class ProcessGroup:
    """The ranks of one MPI communicator (default: ``MPI.COMM_WORLD``).

    ``rank``, ``size``, ``local_rank``/``local_size`` (the ranks on this machine) and
    ``peers`` (``(host, pid)`` of every rank).
    """

    def __init__(self, comm: Any = None, timeout: float | None = None) -> None:
        MPI = mpi()
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if timeout is None:
            timeout = float(os.environ.get("TINYAE_DIST_TIMEOUT", DEFAULT_TIMEOUT))
        if not timeout > 0:
            raise ValueError(f"ProcessGroup: timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.host = socket.gethostname()
        self.peers: list[tuple[str, int]] = self.comm.allgather((self.host, os.getpid()))
        local = [r for r, (host, _) in enumerate(self.peers) if host == self.host]
        self.local_rank, self.local_size = local.index(self.rank), len(local)
        self._nccl: _NcclComm | None = None

    def describe(self, rank: int) -> str:
        host, pid = self.peers[rank]
        return f"rank {rank} (pid {pid} on {host})"

    # ------------------------------------------------------------ waiting
    def dead_peers(self) -> list[int]:
        """The ranks on this machine whose process is gone."""
        return [
            r
            for r, (host, pid) in enumerate(self.peers)
            if host == self.host and r != self.rank and not _alive(pid)
        ]

    def wait(self, requests: list[Any], what: str) -> None:
        """Wait for MPI ``requests`` (or :class:`_NcclComm` handles); DistributedError on a dead peer/timeout.

        Polls with short sleeps (from 10 us up to 1 ms): MPI makes progress only inside its
        calls, and a sleeping rank leaves the core to a partner rank on the same machine.
        """
        if self._test(requests):
            return
        start = time.monotonic()
        next_check, pause = start + _CHECK_EVERY, 1e-5
        while not self._test(requests):
            now = time.monotonic()
            if now >= next_check:
                dead = self.dead_peers()
                if dead:
                    names = ", ".join(self.describe(r) for r in dead)
                    raise DistributedError(
                        f"{self.describe(self.rank)}: {names} is gone (it died or exited) while waiting "
                        f"for {what}; stopping"
                    )
                if now - start > self.timeout:
                    raise DistributedError(
                        f"{self.describe(self.rank)}: no progress for {self.timeout:g} s while waiting for "
                        f"{what}; a rank on another machine may have died or hung "
                        f"(TINYAE_DIST_TIMEOUT sets the limit)"
                    )
                next_check = now + _CHECK_EVERY
            time.sleep(pause)
            pause = min(2 * pause, 1e-3)

    def _test(self, requests: list[Any]) -> bool:
        gpu_done = all([r.done() for r in requests if isinstance(r, _GpuHandle)])  # a list: test them all
        mpi_requests = [r for r in requests if not isinstance(r, _GpuHandle)]
        return gpu_done and (not mpi_requests or bool(self.MPI.Request.Testall(mpi_requests)))

    def poke(self, requests: list[Any]) -> None:
        """Let MPI move pending ``requests`` along (called between layers of backward)."""
        self._test(requests)

    # -------------------------------------------------------- collectives
    def iallreduce(self, send: Any, recv: Any) -> Any:
        """Start ``recv = sum over ranks of send`` (same shape and dtype everywhere); returns a handle."""
        if backend.is_cupy_array(send):
            return self.nccl().allreduce(send, recv)
        return self.comm.Iallreduce(send, recv, op=self.MPI.SUM)

    def allreduce(self, array: Any, what: str = "an allreduce") -> Any:
        """The sum of ``array`` over the ranks (a new array)."""
        out = backend.get_array_module(array).empty_like(array)
        self.wait([self.iallreduce(array, out)], what)
        return out

    def broadcast_(self, array: Any, root: int = 0, what: str = "a broadcast") -> None:
        """Overwrite ``array`` on every rank with rank ``root``'s values."""
        if backend.is_cupy_array(array):
            host = backend.to_device(array, "cpu")
            self.broadcast_(host, root, what)
            array[...] = backend.to_device(host, backend.device_of(array))
            return
        self.wait([self.comm.Ibcast(array, root=root)], what)

    def broadcast_object(self, obj: Any, root: int = 0, what: str = "a broadcast") -> Any:
        """Rank ``root``'s ``obj`` (anything picklable) on every rank."""
        data = np.frombuffer(pickle.dumps(obj), np.uint8) if self.rank == root else None
        length = np.array([0 if data is None else data.size], np.int64)
        self.broadcast_(length, root, what)
        buffer = data.copy() if data is not None else np.empty(int(length[0]), np.uint8)
        self.broadcast_(buffer, root, what)
        return obj if self.rank == root else pickle.loads(buffer.tobytes())

    def barrier(self, what: str = "the other ranks") -> None:
        self.wait([self.comm.Ibarrier()], what)

    def abort(self, code: int = 1) -> None:
        """Stop every rank of the job now (``MPI_Abort``)."""
        self.comm.Abort(code)

    # --------------------------------------------------------------- GPU
    def nccl(self) -> _NcclComm:
        if self._nccl is None:
            self._nccl = _NcclComm(self)
        return self._nccl


class _GpuHandle:
    """A reduction of GPU arrays in flight; ``done()`` checks without blocking."""

    def __init__(self, test: Any) -> None:
        self.test, self.finished = test, False

    def done(self) -> bool:
        self.finished = self.finished or bool(self.test())
        return self.finished


class _NcclComm:
    """Sums of CuPy arrays over the ranks: NCCL when CuPy has it, else staged through host memory.

    NCCL: rank 0 makes a unique id, MPI broadcasts it, every rank joins the communicator
    on its current GPU (one GPU per rank: NCCL refuses two ranks on one device), and
    ``allReduce`` runs on a stream of its own, ordered after the work already queued on
    the current stream. Without NCCL the array is copied to the host, reduced by MPI and
    copied back (a CUDA-aware MPI could take the device pointer, but the mpich wheel is not
    built with CUDA, so tinyae does not assume one).
    """

    def __init__(self, group: ProcessGroup) -> None:
        import cupy

        self.cupy, self.group = cupy, group
        self.stream = cupy.cuda.Stream(non_blocking=True)
        try:
            from cupy.cuda import nccl
        except ImportError:
            nccl = None
        self.nccl = nccl if nccl is not None and getattr(nccl, "available", True) else None
        self.comm = None
        if self.nccl is not None:
            uid = self.nccl.get_unique_id() if group.rank == 0 else None
            uid = group.broadcast_object(uid, what="the NCCL id")
            self.comm = self.nccl.NcclCommunicator(group.size, uid, group.rank)

    def allreduce(self, send: Any, recv: Any) -> _GpuHandle:
        cupy = self.cupy
        ready = cupy.cuda.get_current_stream().record()
        self.stream.wait_event(ready)  # the gradients are written before NCCL reads them
        if self.comm is not None:
            dtypes = {
                np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                np.dtype(np.float64): self.nccl.NCCL_FLOAT64,
            }
            self.comm.allReduce(
                send.data.ptr,
                recv.data.ptr,
                send.size,
                dtypes[np.dtype(send.dtype)],
                self.nccl.NCCL_SUM,
                self.stream.ptr,
            )
            event = self.stream.record()
            return _GpuHandle(lambda: event.done)
        host_send = cupy.asnumpy(send, stream=self.stream)  # blocking copy
        host_recv = np.empty_like(host_send)
        request = self.group.comm.Iallreduce(host_send, host_recv, op=self.group.MPI.SUM)

        def test() -> bool:
            if not request.Test():
                return False
            recv.set(host_recv)  # once: _GpuHandle remembers that it finished
            return True

        return _GpuHandle(test)


# ------------------------------------------------------------------ the default group
_default: ProcessGroup | None = None


def init_process_group(backend: str = "mpi", timeout: float | None = None) -> ProcessGroup:
    """Join the job's ranks (``MPI.COMM_WORLD``) as the default group; returns it.

    As ``torch.distributed.init_process_group``, for processes started by ``mpiexec``:
    rank and world size come from MPI, not from arguments. ``timeout`` (seconds) bounds
    every wait (default ``TINYAE_DIST_TIMEOUT``, else 1800). Calling it again returns the
    same group. A process started without ``mpiexec`` is a group of one.
    """
    global _default
    if backend != "mpi":
        raise ValueError(
            f"init_process_group: backend must be 'mpi' (GPU arrays use NCCL inside it), got {backend!r}"
        )
    if _default is None:
        group = ProcessGroup(timeout=timeout)
        expected = launched_world_size()
        if group.size != expected and expected > 1:
            raise DistributedError(
                f"init_process_group: the process manager started {expected} ranks but MPI sees "
                f"{group.size}: mpiexec and mpi4py use different MPI libraries (use the mpiexec "
                f"installed with mpi4py's MPI, e.g. the one next to {os.path.dirname(sys.executable)})"
            )
        _default = group
    return _default


def is_initialized() -> bool:
    return _default is not None


def default_group() -> ProcessGroup:
    if _default is None:
        raise RuntimeError("tinyae.distributed: call init_process_group() first")
    return _default


def get_rank() -> int:
    """This process's rank in the default group (0 before ``init_process_group``)."""
    return _default.rank if _default is not None else 0


def get_world_size() -> int:
    """How many ranks the default group has (1 before ``init_process_group``)."""
    return _default.size if _default is not None else 1


def destroy_process_group() -> None:
    """Forget the default group (MPI itself is finalised when the process exits)."""
    global _default
    _default = None
