"""What the training loop and the CLI need: one object per run, and the ``--workers`` launcher.

:func:`for_training` returns a :class:`DataParallelRun`. In a process started alone it
does nothing (rank 0 of 1, every method an identity). Started by ``mpiexec -n N`` it
joins the ranks, and the loop (:mod:`tinyae.train.loop`) calls it at these points::

    run.from_writer(read checkpoint)  rank 0 reads --resume's checkpoint, every rank gets it
    run.attach(recipe)                broadcast rank 0's weights; DDP hooks; SyncBatchNorm on request;
                                      optimizer.step() first waits for the gradient allreduce
    run.shard(loader)                 this rank's rows of every global batch
    with run.step(loader): ...        this step's batch share; per-sample noise drawn for the global batch
    run.reduce_step(loss, n, stop)    the global batch's loss and size; stop when any rank stops
    run.from_writer(evaluate)         rank 0 evaluates and writes, every rank gets the record
    with run.guard(): ...             an error on one rank is printed with its rank, then MPI_Abort

Only rank 0 writes (checkpoint.npz, metrics.json, pictures) and prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tinyae.distributed.group import (
    DistributedError,
    ProcessGroup,
    init_process_group,
    launched_rank,
    launched_world_size,
)

__all__ = ["DataParallelRun", "cli_workers", "for_training", "launch_workers", "mpiexec_path"]

#: environment variable: where rank 0 writes the ranks' (host, pid) table for the --workers launcher
RANK_TABLE = "TINYAE_RANK_TABLE"


class DataParallelRun:
    """The distributed side of one training run (see the module docstring)."""

    def __init__(
        self, group: ProcessGroup | None = None, sync_batchnorm: bool = False, bucket_cap_mb: float = 1.0
    ) -> None:
        self.group = group
        self.rank = group.rank if group is not None else 0
        self.size = group.size if group is not None else 1
        self.is_writer = self.rank == 0
        self.sync_batchnorm, self.bucket_cap_mb = sync_batchnorm, bucket_cap_mb
        self.wrappers: list[Any] = []
        self.summed = False  # the recipe's loss is a sum over the batch (not a mean)
        self.skip_notice: str | None = None

    # ------------------------------------------------------------ set up
    def attach(self, recipe: Any) -> None:
        """Make ``recipe``'s modules train data-parallel (after build and any checkpoint load)."""
        if self.size == 1:
            return
        from tinyae.distributed.ddp import DistributedDataParallel
        from tinyae.distributed.sync_bn import convert_sync_batchnorm
        from tinyae.optim.optimizer import Optimizer

        reduction = getattr(recipe, "loss_reduction", "mean")
        if reduction not in ("mean", "sum"):
            raise ValueError(
                f"{type(recipe).__name__}.loss_reduction must be 'mean' or 'sum', got {reduction!r}"
            )
        self.summed = reduction == "sum"
        for module in recipe.modules().values():
            if self.sync_batchnorm:
                convert_sync_batchnorm(module, self.group)
            self.wrappers.append(DistributedDataParallel(module, self.bucket_cap_mb, self.group))
        for optimizer in recipe.optimizers().values():
            if isinstance(optimizer, Optimizer):
                _synchronize_before_step(optimizer, self.wrappers)

    def before_training(self, recipe: Any) -> None:
        """``recipe.before_training()`` on rank 0 only (it prepares evaluation, e.g. trains a
        scoring classifier into a cache); every rank goes on from rank 0's random state, in
        case it drew from the global generator."""
        if self.size == 1:
            recipe.before_training()
            return
        from tinyae.creation import generator

        def prepare() -> dict[str, Any]:
            recipe.before_training()
            return generator().bit_generator.state

        generator().bit_generator.state = self.from_writer(prepare)

    def describe(self, batch_size: int) -> str:
        peers = ", ".join(f"{pid}" for _, pid in self.group.peers)
        hosts = sorted({host for host, _ in self.group.peers})
        from tinyae.parallel import get_num_threads

        return (
            f"data-parallel: {self.size} ranks (pids {peers} on {', '.join(hosts)}), {get_num_threads()} "
            f"thread(s) each; every batch of {batch_size} is split over the ranks"
        )

    # ------------------------------------------------------- the epoch loop
    def shard(self, loader: Any) -> Any:
        if self.size == 1:
            return loader
        from tinyae.distributed.sampler import ShardedLoader, short_tail

        sharded = ShardedLoader(loader, self.size, self.rank)
        tail = short_tail(loader, self.size)
        if tail and self.skip_notice is None:
            self.skip_notice = (
                f"the last batch of every epoch has {tail} image(s), fewer than the {self.size} ranks: "
                "it is skipped"
            )
            if self.is_writer:
                print(f"warning: {self.skip_notice}", file=sys.stderr, flush=True)
        return sharded

    @contextlib.contextmanager
    def step(self, loader: Any) -> Iterator[None]:
        """Around one ``train_step`` on the batch ``loader`` just yielded."""
        if self.size == 1:
            yield
            return
        from tinyae.distributed.sampler import sharded_draws

        mine, total = loader.share
        for ddp in self.wrappers:  # mean loss: weight by the share of the batch; summed loss: add
            ddp.batch_share = 1.0 if self.summed else mine / total
        with sharded_draws(self.rank, self.size, total):
            yield

    def reduce_step(self, loss: float, n: int, stop: bool) -> tuple[float, int, bool]:
        """(mean loss over the global batch, its size, whether any rank asked to stop)."""
        if self.size == 1:
            return loss, n, stop
        total = self.group.allreduce(np.array([loss * n, n, float(stop)]), "the step's loss")
        return float(total[0] / total[1]), int(total[1]), bool(total[2] > 0)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on one."""
        return self.reduce_step(0.0, 1, flag)[2]

    def from_writer(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run by rank 0 only; its result (or its exception) on every rank."""
        if self.size == 1:
            return fn()
        outcome: tuple[bool, Any] = (True, None)
        if self.is_writer:
            try:
                outcome = (True, fn())
            except Exception as exc:  # handed to every rank, raised there
                outcome = (False, exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}"))
        ok, value = self.group.broadcast_object(outcome, what="rank 0 (evaluating or writing)")
        if not ok:
            value._tinyae_all_ranks = True  # guard(): every rank raises it, no abort needed
            raise value
        return value

    def writer_first(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0, then, once it succeeded there, on the others (e.g. a download into a cache)."""
        if self.size == 1:
            return fn()
        box: list[Any] = []
        self.from_writer(lambda: box.append(fn()))  # an error on rank 0 is raised on every rank
        return box[0] if self.is_writer else fn()

    # ------------------------------------------------------------- errors
    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """On an error that only this rank saw: print it with the rank, then stop every rank."""
        try:
            yield
        except BaseException as exc:
            if self.size == 1 or getattr(exc, "_tinyae_all_ranks", False) or isinstance(exc, SystemExit):
                raise
            where = self.group.describe(self.rank)
            if isinstance(exc, DistributedError):
                print(f"tinyae: error: {exc}", file=sys.stderr, flush=True)
            else:
                print(f"tinyae: {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
                traceback.print_exc()
                print(f"tinyae: {where} failed; stopping all {self.size} ranks", file=sys.stderr, flush=True)
            self.group.abort(1)
            raise  # only if the abort did not end this process


def _picklable(obj: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:
        return False
    return True


def _synchronize_before_step(optimizer: Any, wrappers: list[Any]) -> None:
    """Make ``optimizer.step()`` wait for (and apply) the gradient average first."""
    step = optimizer.step

    def synchronized_step(*args: Any, **kwargs: Any) -> Any:
        for ddp in wrappers:  # the same order on every rank
            ddp.synchronize()
        return step(*args, **kwargs)

    optimizer.step = synchronized_step


def _threads_per_rank(group: ProcessGroup) -> None:
    """Share this machine's cores among its ranks, unless the user chose a thread count."""
    if any(os.environ.get(v) for v in ("TINYAE_NUM_THREADS", "OMP_NUM_THREADS")):
        return
    from tinyae.parallel import get_num_threads, set_num_threads

    set_num_threads(max(1, get_num_threads() // group.local_size))


def _local_gpu(group: ProcessGroup, device: str) -> str:
    """With several ranks on a machine, local rank k takes GPU (K + k) mod count for ``cuda:K``."""
    if not device.startswith("cuda") or group.local_size == 1:
        return device
    from tinyae import backend

    cupy = backend.cupy_or_none()
    if cupy is None:
        return device  # parse_device will say why there is no GPU
    first = int(device.split(":")[1]) if ":" in device else 0
    index = (first + group.local_rank) % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(index).use()  # NCCL and the streams work on the current device
    return f"cuda:{index}"


def for_training(config: dict[str, Any], quiet: bool = False) -> DataParallelRun:
    """A :class:`DataParallelRun`: of N ranks when started by ``mpiexec -n N`` (N > 1), else of one."""
    if launched_world_size() <= 1:
        return DataParallelRun()
    group = init_process_group()
    if group.size == 1:
        return DataParallelRun()
    _threads_per_rank(group)
    config["device"] = _local_gpu(group, str(config.get("device", "cpu")))  # rank 0 keeps the one given
    run = DataParallelRun(group, sync_batchnorm=bool(config.get("sync_bn", False)))
    if run.is_writer and os.environ.get(RANK_TABLE):
        with open(os.environ[RANK_TABLE], "w", encoding="utf-8") as f:
            json.dump(group.peers, f)
    if run.is_writer and not quiet:
        print(run.describe(int(config["batch_size"])), file=sys.stderr, flush=True)
    return run


# ------------------------------------------------------------------ the launcher
def cli_workers(args: Any, run_dir: str) -> int | None:
    """``tinyae train``'s data-parallel step, after its options are checked.

    In a rank started by mpiexec: check ``--workers`` agrees, silence ranks > 0, return
    None (train). With ``--workers N`` (N > 1) outside mpiexec: start the N ranks on the same
    command line, the run directory made explicit so that all agree, and return their exit status.
    """
    launched = launched_world_size()
    if launched > 1:
        if args.workers not in (1, launched):
            args.parser.error(f"--workers {args.workers}: mpiexec started {launched} processes")
        if launched_rank() > 0:
            args.quiet = True  # rank 0 prints the progress and the report
        return None
    if args.workers == 1:
        return None
    argv = _without_option(args.argv, "--workers")
    if args.resume is None and args.out is None:
        argv += ["--out", run_dir]
    try:
        return launch_workers(args.workers, argv)
    except (ImportError, FileNotFoundError) as exc:
        args.parser.error(f"--workers {args.workers}: {exc}")
    raise AssertionError  # parser.error exits


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` less ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def mpiexec_path() -> str | None:
    """The ``mpiexec`` of the MPI that mpi4py uses: next to this Python first (the mpich wheel), then PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("mpiexec")


def launch_workers(workers: int, argv: list[str]) -> int:
    """Run ``tinyae <argv>`` as ``workers`` local ranks under mpiexec; returns the exit status.

    The cores are shared out (``TINYAE_NUM_THREADS`` = cores / workers, unless set). The
    ranks' standard output passes through this process, which watches for the report of
    MPICH's launcher on a rank that died (it names only a process id) and then says which
    rank that was, from the table rank 0 writes at start.
    """
    from tinyae.distributed.group import mpi

    mpi()  # ImportError with the install hint when mpi4py is missing
    mpiexec = mpiexec_path()
    if mpiexec is None:
        raise FileNotFoundError('--workers: no mpiexec found; pip install "tinyae[mpi]" brings one (mpich)')
    env = dict(os.environ)
    if not any(env.get(v) for v in ("TINYAE_NUM_THREADS", "OMP_NUM_THREADS")):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        env["TINYAE_NUM_THREADS"] = str(max(1, cores // workers))
    fd, table = tempfile.mkstemp(prefix="tinyae-ranks-", suffix=".json")
    os.close(fd)
    env[RANK_TABLE] = table
    command = [mpiexec, "-n", str(workers), sys.executable, "-m", "tinyae", *argv]
    try:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
        tail = b""
        while chunk := os.read(process.stdout.fileno(), 65536):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            tail = (tail + chunk)[-8192:]
        status = process.wait()
        if status != 0:
            message = _who_died(tail.decode(errors="replace"), table)
            if message:
                print(f"tinyae: {message}; the other ranks were stopped", file=sys.stderr, flush=True)
        return status
    finally:
        os.remove(table)


def _who_died(output: str, table: str) -> str | None:
    """'rank 1 (pid 4242 on node7) died (exit code 9)' from hydra's report and the rank table."""
    found = re.search(r"BAD TERMINATION.*?PID (\d+).*?EXIT CODE: (\d+)", output, re.S)
    if found is None:
        return None
    pid, code = int(found.group(1)), int(found.group(2))
    try:
        with open(table, encoding="utf-8") as f:
            peers = json.load(f)
    except (OSError, ValueError):
        peers = []
    ranks = [r for r, (_, p) in enumerate(peers) if p == pid]
    who = f"rank {ranks[0]} (pid {pid} on {peers[ranks[0]][0]})" if ranks else f"the process with pid {pid}"
    signal_note = " = killed by signal 9" if code == 9 else ""
    return f"{who} died (exit code {code}{signal_note})"
