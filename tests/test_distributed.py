"""tinyae.distributed: the data split, SyncBatchNorm, DDP, and whole runs on 2 and 3 local ranks.

The first tests need no MPI. The others start ranks with the ``mpiexec`` of the ``mpich``
wheel (``pip install "tinyae[mpi]"``) and skip, saying so, when it is missing. Ranks run
this very file as a script (``python test_distributed.py MODE ARGS``, at the bottom): the
test compares what rank 0 saved with a single process computed here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from run_helpers import read_metrics

import tinyae
from tinyae.data import DataLoader, TensorDataset
from tinyae.distributed.sampler import DistributedSampler, ShardedLoader, sharded_draws
from tinyae.distributed.sync_bn import SyncBatchNorm
from tinyae.nn import BatchNorm2d

HANG_GUARD = 300  # seconds: a run that takes longer is a hang, never a timing check


# ------------------------------------------------------------------ no MPI needed
@pytest.mark.parametrize("n, batch, ranks", [(64, 12, 3), (64, 12, 2), (50, 16, 3), (49, 16, 2)])
def test_sharded_loader_splits_every_global_batch(n: int, batch: int, ranks: int) -> None:
    data = TensorDataset(np.arange(n, dtype=np.float32)[:, None])
    whole = DataLoader(data, batch_size=batch, shuffle=True, seed=5)
    whole.set_epoch(3)
    expected = [b[0].numpy().ravel() for b in whole]
    shards = []
    for rank in range(ranks):
        loader = ShardedLoader(DataLoader(data, batch_size=batch, shuffle=True, seed=5), ranks, rank)
        loader.set_epoch(3)
        shards.append([(b[0].numpy().ravel(), loader.share) for b in loader])
    tail = n % batch
    dropped = 0 < tail < ranks  # a last batch with fewer rows than ranks is skipped
    assert len(shards[0]) == len(expected) - dropped
    for k, global_batch in enumerate(expected[: len(shards[0])]):
        parts = [shards[r][k][0] for r in range(ranks)]
        assert sorted(np.concatenate(parts)) == sorted(global_batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        assert all(shards[r][k][1] == (len(parts[r]), len(global_batch)) for r in range(ranks))


def test_sharded_loader_rejects_a_batch_smaller_than_the_ranks() -> None:
    data = TensorDataset(np.zeros((10, 1), np.float32))
    with pytest.raises(ValueError, match="global batch size 2 is smaller than the 3 ranks"):
        ShardedLoader(DataLoader(data, batch_size=2), 3, 0)


@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_covers_the_epoch(drop_last: bool) -> None:
    data = list(range(23))
    samplers = [DistributedSampler(data, 4, r, seed=2, drop_last=drop_last) for r in range(4)]
    for s in samplers:
        s.set_epoch(1)
    parts = [list(s) for s in samplers]
    assert {len(p) for p in parts} == {len(samplers[0])} == {5 if drop_last else 6}
    order = DataLoader(TensorDataset(np.zeros((23, 1))), shuffle=True, seed=2).order(1)
    flat = [i for k in range(len(parts[0])) for p in parts for i in p[k : k + 1]]
    assert flat == list(np.resize(order, len(flat)))  # rank r holds positions r, r + 4, ...


def test_sharded_draws_reassemble_the_global_draw() -> None:
    reference = np.random.default_rng(9)
    want_noise, want_mask, want_scalar = (
        reference.standard_normal((7, 3)),
        reference.random((7, 2)),
        reference.random(),
    )
    saved = tinyae.generator().bit_generator.state
    try:
        for rank in range(3):
            mine = len(range(rank, 7, 3))  # rows of a 7-row batch: 3, 2, 2
            tinyae.manual_seed(9)
            with sharded_draws(rank, 3, 7):
                noise = tinyae.randn(mine, 3).numpy()
                mask = tinyae.generator().random((mine, 2))
                scalar = tinyae.generator().random()  # not per-sample: drawn as is
            np.testing.assert_array_equal(noise, want_noise[rank::3].astype(np.float32))
            np.testing.assert_array_equal(mask, want_mask[rank::3])
            assert scalar == want_scalar
            # every rank's generator moved exactly as the single process's did
            assert tinyae.generator().bit_generator.state == reference.bit_generator.state
    finally:
        tinyae.generator().bit_generator.state = saved


def _one_rank_sync_bn(weight: np.ndarray, bias: np.ndarray) -> SyncBatchNorm:
    bn = SyncBatchNorm(3, group=types.SimpleNamespace(size=1)).double()
    bn.weight.data[...], bn.bias.data[...] = weight, bias
    return bn


def test_sync_batchnorm_on_one_rank_is_batchnorm() -> None:
    rng = np.random.default_rng(0)
    x, c = rng.standard_normal((6, 3, 4, 5)) * 3 + 1, rng.standard_normal((6, 3, 4, 5))
    w, b = np.array([1.5, -0.5, 2.0]), np.array([0.1, 0.2, -0.3])
    ref = BatchNorm2d(3).double()
    ref.weight.data[...], ref.bias.data[...] = w, b
    sync = _one_rank_sync_bn(w, b)
    outs = []
    for bn in (ref, sync):
        xt = tinyae.tensor(x, requires_grad=True)
        (bn(xt) * tinyae.tensor(c)).sum().backward()
        outs.append([xt.grad.numpy(), bn.weight.grad.numpy(), bn.bias.grad.numpy(), bn.running_var.numpy()])
    for got, want in zip(outs[1], outs[0]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    sync.eval()
    np.testing.assert_allclose(sync(tinyae.tensor(x)).numpy(), ref.eval()(tinyae.tensor(x)).numpy(), 1e-12)


def test_sync_batchnorm_gradcheck_on_one_rank() -> None:
    rng = np.random.default_rng(1)
    bn = _one_rank_sync_bn(np.array([1.5, -0.5, 2.0]), np.array([0.1, 0.2, -0.3]))
    x = tinyae.tensor(rng.standard_normal((4, 3, 2, 2)), requires_grad=True)
    assert tinyae.gradcheck(lambda t: bn(t), (x,))


# ------------------------------------------------------------- ranks on localhost
@functools.lru_cache(maxsize=1)
def _mpi_missing() -> str | None:
    """Why ranks cannot be started here (None when they can): checked once, in a subprocess."""
    try:
        import mpi4py  # noqa: F401 - presence only: importing mpi4py.MPI would start MPI in pytest
    except ImportError:
        return "mpi4py is not installed (pip install 'tinyae[mpi]' brings it and the mpich wheel)"
    from tinyae.distributed.training import mpiexec_path

    mpiexec = mpiexec_path()
    if mpiexec is None:
        return "no mpiexec found (pip install 'tinyae[mpi]' brings MPICH's)"
    probe = [
        mpiexec,
        "-n",
        "2",
        sys.executable,
        "-c",
        "from mpi4py import MPI; assert MPI.COMM_WORLD.size == 2",
    ]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mpiexec cannot start 2 ranks here ({exc})"
    return None if done.returncode == 0 else f"mpiexec cannot start 2 ranks here: {done.stderr[-300:]}"


@pytest.fixture
def mpi() -> None:
    """Skip unless ranks can be started on this machine."""
    reason = _mpi_missing()
    if reason is not None:
        pytest.skip(f"ranks cannot be started: {reason}")


def _ranks(n: int, mode: str, args: dict, command: list[str] | None = None) -> subprocess.CompletedProcess:
    """``n`` ranks running ``_worker(mode, args)`` (or ``command``), one thread each."""
    from tinyae.distributed.training import mpiexec_path

    env = {**os.environ, "TINYAE_NUM_THREADS": "1", "TINYAE_DIST_TIMEOUT": "60"}
    command = command or [sys.executable, __file__, mode, json.dumps(args)]
    done = subprocess.run([mpiexec_path(), "-n", str(n), *command], capture_output=True, text=True,
                          timeout=HANG_GUARD, env=env)  # fmt: skip
    return done


def _check(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, (
        f"ranks failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )


def _run_config(model: str) -> dict:
    """A small epoch whose last batch (4 of 64 images) splits unevenly over 3 ranks."""
    config = {"dataset": "shapes", "epochs": 1, "limit_train": 64, "limit_test": 32, "batch_size": 12}
    return {**config, "score_samples": 0} if model in ("vae", "gan") else config


def _modules(run_dir: str) -> dict[str, np.ndarray]:
    from tinyae.train.checkpoint import read_checkpoint

    state = read_checkpoint(str(run_dir))["state"]["modules"]
    return {f"{m}.{k}": np.asarray(v) for m, sd in state.items() for k, v in sd.items()}


def _train_here(model: str, out: str, **overrides: object) -> dict[str, np.ndarray]:
    from tinyae.train.loop import default_config, train

    train(default_config(model, **{**_run_config(model), **overrides}), out, quiet=True)
    return _modules(out)


def _assert_same_parameters(got: dict, want: dict, rtol: float) -> None:
    for name, w in want.items():
        if w.dtype.kind == "f":
            err = np.abs(got[name] - w).max() / max(np.abs(w).max(), 1e-30)
            assert err <= rtol, f"{name}: relative difference {err:.2g} > {rtol}"


# The gradients agree to float32 rounding (test_ddp_...: 1e-5), models drawing noise included
# (the same numbers are drawn). Adam's first steps divide by |g|, which magnifies rounding in
# tiny gradients: after these 6 steps parameters differ by up to 4e-5 of their largest value.
MODELS = ("ae", "conv-ae", "denoise", "vae", "gan")
RTOL = 1e-4


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_end_the_epoch_with_the_single_process_parameters(ranks: int, tmp_path, mpi) -> None:
    jobs = [(m, str(tmp_path / f"{m}-{ranks}")) for m in MODELS]
    _check(_ranks(ranks, "train", {"jobs": jobs}))
    for model, out in jobs:
        want = _train_here(model, str(tmp_path / f"{model}-1"))
        _assert_same_parameters(_modules(out), want, RTOL)
        got_loss = read_metrics(out)["epochs"][0]["train_loss"]
        want_loss = read_metrics(str(tmp_path / f"{model}-1"))["epochs"][0]["train_loss"]
        assert got_loss == pytest.approx(want_loss, rel=RTOL)


def _ddp_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 5)).astype(np.float32)
    return x, rng.standard_normal((12, 3)).astype(np.float32), rng.standard_normal((12, 3)).astype(np.float32)


def _ddp_model(seed: int) -> tinyae.nn.Sequential:
    tinyae.manual_seed(seed)
    return tinyae.nn.Sequential(tinyae.nn.Linear(5, 8), tinyae.nn.ReLU(), tinyae.nn.Linear(8, 3))


def _grads(model: tinyae.nn.Module) -> dict[str, np.ndarray]:
    return {k: p.grad.numpy() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("ranks", [2, 3])
def test_ddp_gradients_are_the_global_batch_gradients(ranks: int, tmp_path, mpi) -> None:
    out = str(tmp_path / "grads.npz")
    _check(_ranks(ranks, "ddp", {"out": out}))
    got = dict(np.load(out))
    x, t, t2 = (tinyae.tensor(a) for a in _ddp_problem())
    mse = tinyae.nn.functional.mse_loss
    want = {}
    model = _ddp_model(0)  # rank 0's initial weights: the other ranks started from other seeds
    mse(model(x), t).backward()
    want["full"] = _grads(model)
    model = _ddp_model(0)
    mse(model[2](model[1](model[0](x).detach())), t).backward()  # reaches the last layer only
    want["partial"] = _grads(model)
    model = _ddp_model(0)
    (mse(model(x), t) + mse(model(x), t2)).backward()
    want["no_sync"] = _grads(model)
    for case in ("bucketed", "one_bucket", "reference"):
        for name, g in want["full"].items():
            np.testing.assert_allclose(
                got[f"{case}/{name}"], g, rtol=1e-5, atol=1e-6, err_msg=f"{case} {name}"
            )
    for case in ("partial", "no_sync"):
        assert sorted(k.split("/")[1] for k in got if k.startswith(case + "/")) == sorted(want[case])
        for name, g in want[case].items():
            np.testing.assert_allclose(
                got[f"{case}/{name}"], g, rtol=1e-5, atol=1e-6, err_msg=f"{case} {name}"
            )
    assert "second gradient before the first was averaged" in str(got["error"])


@pytest.mark.parametrize("ranks", [2, 3])
def test_sync_batchnorm_matches_batchnorm_over_the_whole_batch(ranks: int, tmp_path, mpi) -> None:
    out = str(tmp_path / "bn.npz")
    _check(_ranks(ranks, "syncbn", {"out": out}))
    got = np.load(out)
    x, c, w, b = _bn_problem()
    ref = BatchNorm2d(3).double()
    ref.weight.data[...], ref.bias.data[...] = w, b
    xt = tinyae.tensor(x, requires_grad=True)
    y = ref(xt)
    (y * tinyae.tensor(c)).sum().backward()
    want = {"y": y.numpy(), "gx": xt.grad.numpy(), "gw": ref.weight.grad.numpy(), "gb": ref.bias.grad.numpy(),
            "running_mean": ref.running_mean.numpy(), "running_var": ref.running_var.numpy()}  # fmt: skip
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def _bn_problem() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(3)
    x, c = rng.standard_normal((7, 3, 4, 5)) * 3 + 1, rng.standard_normal((7, 3, 4, 5))
    return x, c, np.array([1.5, -0.5, 2.0]), np.array([0.1, 0.2, -0.3])


def test_a_dead_rank_stops_the_job_and_resume_continues(tmp_path, mpi) -> None:
    from tinyae.train.checkpoint import read_checkpoint

    out = str(tmp_path / "run")
    died = _ranks(2, "fault", {"out": out, "victim": 1, "at": [1, 2]})  # rank 1 dies in epoch 2
    assert died.returncode != 0
    ckpt = read_checkpoint(out, "ae")  # intact: the one written after epoch 1
    assert (ckpt["epoch"], ckpt["batch"]) == (1, 0)
    _check(_ranks(2, "train", {"jobs": [["ae", out]], "epochs": 2, "resume": True}))
    want = _train_here("ae", str(tmp_path / "whole"), epochs=2)
    _assert_same_parameters(_modules(out), want, RTOL)


def _never_done() -> object:
    from tinyae.distributed.group import _GpuHandle

    return _GpuHandle(lambda: False)  # a request that never completes (no MPI needed)


def _group_of_two(peer_pid: int, timeout: float) -> object:
    """A ProcessGroup seen from rank 0, with rank 1 = ``peer_pid`` on this machine (no MPI)."""
    from tinyae.distributed.group import ProcessGroup

    group = object.__new__(ProcessGroup)
    group.rank, group.size, group.timeout, group.host = 0, 2, timeout, "here"
    group.peers = [("here", os.getpid()), ("here", peer_pid)]
    return group


def test_waiting_for_a_dead_rank_names_it() -> None:
    from tinyae.distributed.group import DistributedError

    peer = subprocess.Popen([sys.executable, "-c", "pass"])
    peer.wait()  # gone (and reaped)
    with pytest.raises(DistributedError, match=rf"rank 1 \(pid {peer.pid} on here\) is gone .* the loss"):
        _group_of_two(peer.pid, timeout=600).wait([_never_done()], "the loss")


def test_waiting_without_progress_times_out() -> None:
    from tinyae.distributed.group import DistributedError

    with pytest.raises(DistributedError, match="no progress for 0.2 s while waiting for the loss"):
        _group_of_two(os.getpid(), timeout=0.2).wait([_never_done()], "the loss")


def test_workers_names_a_rank_killed_from_outside(tmp_path, mpi) -> None:
    from tinyae.train.checkpoint import CheckpointError, read_checkpoint

    out, log = str(tmp_path / "run"), tmp_path / "stderr.txt"
    options = ["--dataset", "shapes", "--epochs", "60", "--limit-train", "64", "--limit-test", "32"]
    command = [sys.executable, "-m", "tinyae", "train", "ae", *options, "--out", out, "--workers", "2"]
    with open(log, "w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            pids, done = None, 0
            for _ in range(HANG_GUARD * 10):  # until rank 1's pid is known and an epoch is saved
                found = re.search(r"data-parallel: 2 ranks \(pids (\d+), (\d+)", log.read_text())
                pids = pids or (found and (int(found.group(1)), int(found.group(2))))
                with contextlib.suppress(CheckpointError):
                    done = read_checkpoint(out, "ae")["epoch"]
                if pids and done >= 1 or process.poll() is not None:
                    break
                time.sleep(0.1)
            assert pids and done >= 1, log.read_text()[-2000:]
            os.kill(pids[1], signal.SIGKILL)
            stdout, _ = process.communicate(timeout=HANG_GUARD)
        finally:
            process.kill()
    assert process.returncode != 0
    assert f"rank 1 (pid {pids[1]}" in log.read_text() and "died" in log.read_text(), log.read_text()[-2000:]
    assert read_checkpoint(out, "ae")["epoch"] >= 1  # still readable


def test_workers_option_starts_the_ranks(tmp_path, mpi) -> None:
    out = str(tmp_path / "run")
    options = ["--dataset", "shapes", "--epochs", "1", "--limit-train", "64", "--limit-test", "32"]
    command = [
        sys.executable,
        "-m",
        "tinyae",
        "train",
        "conv-ae",
        *options,
        "--batch-size",
        "12",
        "--out",
        out,
    ]
    env = {**os.environ, "TINYAE_DIST_TIMEOUT": "60"}
    done = subprocess.run(
        [*command, "--workers", "2"], capture_output=True, text=True, timeout=HANG_GUARD, env=env
    )
    _check(done)
    assert "data-parallel: 2 ranks" in done.stderr
    assert done.stdout.count("final test metrics") == 1  # rank 0 alone reports
    _assert_same_parameters(_modules(out), _train_here("conv-ae", str(tmp_path / "one")), RTOL)


# ------------------------------------------------------------ what the ranks run
def _worker(mode: str, args: dict) -> None:
    from tinyae import distributed as dist
    from tinyae.train.loop import default_config, train

    if mode == "train":
        for model, out in args["jobs"]:
            config = default_config(model, **{**_run_config(model), "epochs": args.get("epochs", 1)})
            train(config, out, quiet=True, resume=args.get("resume", False))
        return
    if mode == "fault":
        victim, at = args["victim"], tuple(args["at"])

        def stop(epoch: int, batch: int) -> bool:
            if dist.get_rank() == victim and (epoch, batch) == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return False

        train(default_config("ae", **{**_run_config("ae"), "epochs": 2}), args["out"], quiet=True, stop=stop)
        return
    group = dist.init_process_group()
    rank, size = group.rank, group.size
    if mode == "syncbn":
        x, c, w, b = _bn_problem()
        rows = np.arange(rank, len(x), size)
        bn = SyncBatchNorm(3).double()
        bn.weight.data[...], bn.bias.data[...] = w, b
        xt = tinyae.tensor(x[rows], requires_grad=True)
        y = bn(xt)
        (y * tinyae.tensor(c[rows])).sum().backward()
        whole = {"y": np.zeros_like(x), "gx": np.zeros_like(x)}
        whole["y"][rows], whole["gx"][rows] = y.numpy(), xt.grad.numpy()
        saved = {k: group.allreduce(v) for k, v in whole.items()}  # rows are disjoint: the sum assembles
        saved.update(gw=group.allreduce(bn.weight.grad.numpy()), gb=group.allreduce(bn.bias.grad.numpy()))
        saved.update(running_mean=bn.running_mean.numpy(), running_var=bn.running_var.numpy())
    else:  # ddp
        x, t, t2 = _ddp_problem()
        rows = np.arange(rank, len(x), size)
        x, t, t2 = (tinyae.tensor(a[rows]) for a in (x, t, t2))
        mse = tinyae.nn.functional.mse_loss
        saved = {}
        for case, options in (("bucketed", {"bucket_cap_mb": 1e-4}), ("one_bucket", {}),
                              ("reference", {"overlap": False})):  # fmt: skip
            model = _ddp_model(seed=rank)  # different on every rank until DDP broadcasts rank 0's
            ddp = dist.DistributedDataParallel(model, **options)
            mse(ddp(x), t).backward()
            ddp.synchronize()  # a no-op for the overlapped ones: backward already averaged
            saved.update({f"{case}/{k}": g for k, g in _grads(model).items()})
            ddp.remove_hooks()
        model = _ddp_model(seed=rank)
        ddp = dist.DistributedDataParallel(model, bucket_cap_mb=1e-4)
        first = model[0](x).detach()
        mse(model[2](model[1](first)), t).backward()  # the first layer gets no gradient
        ddp.synchronize()
        saved.update({f"partial/{k}": g for k, g in _grads(model).items()})
        try:  # two partial backward passes without a synchronize in between
            mse(model[2](model[1](first)), t).backward()
            mse(model[2](model[1](first)), t).backward()
        except RuntimeError as exc:
            saved["error"] = np.array(str(exc))
        ddp.synchronize()
        ddp.remove_hooks()
        model = _ddp_model(seed=rank)
        ddp = dist.DistributedDataParallel(model)
        with ddp.no_sync():
            mse(ddp(x), t).backward()
        mse(ddp(x), t2).backward()  # averages the accumulated gradients
        saved.update({f"no_sync/{k}": g for k, g in _grads(model).items()})
    if rank == 0:
        np.savez(args["out"], **saved)


if __name__ == "__main__":
    _worker(sys.argv[1], json.loads(sys.argv[2]))
