"""``tinyae train MODEL``: options -> config, checks before anything runs, the run, what is printed.

Order of work, so that a mistake costs as little as possible: the options are
checked (status 2), then the run directory is created and tested for writing
(status 5) before the data is loaded (status 3) and training starts. Failures
are raised (:class:`~tinyae.cli.errors.CLIError` or the library's own
exceptions) and turned into one ``error:`` line by :func:`tinyae.cli.main`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from tinyae.cli.errors import EXIT_DIVERGED, EXIT_FAILURE, EXIT_OK, CLIError, interrupted_status

__all__ = ["check_device", "run_train"]


def launched_rank() -> int:
    """This process's rank when started by mpiexec (0 otherwise): only rank 0 talks and checks --out."""
    from tinyae.distributed.group import launched_rank as rank

    return rank()


def check_device(parser: argparse.ArgumentParser, device: str) -> str:
    """The canonical device name, or a usage error naming the option."""
    from tinyae.backend import parse_device

    try:
        return parse_device(device)
    except (ValueError, RuntimeError) as exc:
        parser.error(f"--device {device}: {exc}")
    raise AssertionError  # parser.error exits


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run's config: explicit options, then the recipe's defaults, then the common ones."""
    from tinyae.train.loop import COMMON_DEFAULTS

    cls = args.recipe
    config: dict[str, Any] = {"model": cls.name}
    common = {**COMMON_DEFAULTS, **cls.defaults}
    for key, default in common.items():
        value = getattr(args, key, None)
        config[key] = default if value is None else value
    own = argparse.ArgumentParser(add_help=False)
    cls.add_arguments(own)
    for action in own._actions:
        config[action.dest] = getattr(args, action.dest)
    return config


def _resume_config(args: argparse.Namespace, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Check ``run_dir`` can be resumed with these options; returns the config to pass to train()."""
    from tinyae.train.checkpoint import RunDirectoryError, read_checkpoint
    from tinyae.train.loop import RESUMABLE

    parser = args.parser
    try:
        ckpt = read_checkpoint(run_dir, args.recipe.name)
    except RunDirectoryError as exc:  # a wrong path or model: the command line is at fault
        parser.error(f"--resume: {exc}")
    saved = ckpt["config"]
    if args.epochs is not None and args.epochs < ckpt["epoch"]:
        done = ckpt["epoch"]
        parser.error(f"--resume: --epochs {args.epochs} is fewer than the {done} epochs already done")
    changeable = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE)
    for key, value in config.items():
        if key in RESUMABLE or key == "model" or key not in saved:
            continue
        given = getattr(args, key, None)
        explicit = given is not None and (parser.get_default(key) is None or given != parser.get_default(key))
        if explicit and saved[key] != value:
            option = "--" + key.replace("_", "-")
            parser.error(
                f"--resume: {option} {value} differs from the saved run's {saved[key]}; "
                f"only {changeable} may change"
            )
    resumed = {**saved}
    for key in RESUMABLE:
        given = getattr(args, key, None)
        resumed[key] = given if given is not None else saved.get(key, config[key])
    return resumed


def _new_run_dir(args: argparse.Namespace, name: str) -> str:
    from tinyae.train.checkpoint import CHECKPOINT

    run_dir = args.out or os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        args.parser.error(f"--out {run_dir} is an existing file; give a directory")
    if os.path.isfile(os.path.join(run_dir, CHECKPOINT)) and launched_rank() == 0:  # rank 0 may have begun
        args.parser.error(
            f"--out {run_dir} already holds a run; continue it with --resume or choose another --out"
        )
    return run_dir


def run_train(args: argparse.Namespace) -> int:
    """``tinyae train MODEL [options]``; returns the exit status or raises (see the module docstring)."""
    from tinyae.train.checkpoint import CHECKPOINT
    from tinyae.train.loop import train
    from tinyae.train.stopping import TrainingDiverged

    parser, cls = args.parser, args.recipe
    if cls is None:
        raise CLIError(EXIT_FAILURE, f"model {args.model} cannot be loaded ({args.broken})")
    config = _config_from_args(args)
    message = cls.check_config(config)
    if message:
        parser.error(message)
    config = cls.resolve_config(config)
    config["device"] = check_device(parser, config["device"])

    resume = args.resume is not None
    if resume:
        run_dir = args.resume or args.out
        if not run_dir:
            parser.error("--resume needs the run directory: --resume DIR (or --out DIR --resume)")
        config = _resume_config(args, config, run_dir)
    else:
        run_dir = _new_run_dir(args, cls.name)

    from tinyae.distributed.training import cli_workers  # data-parallel runs: see tinyae.distributed

    status = cli_workers(args, run_dir)
    if status is not None:
        return status  # --workers N: the N ranks ran (and printed) in processes of their own
    say = (lambda *a: None) if args.quiet or launched_rank() != 0 else print
    say(f"training {cls.name} -> {run_dir}" + (" (resumed)" if resume else ""))
    again = f"tinyae train {cls.name} --resume {run_dir}"
    try:
        result = train(config, run_dir, resume=resume, quiet=args.quiet, data_root=args.data_root)
    except KeyboardInterrupt as exc:  # the second signal: stopped at once
        raise CLIError(
            interrupted_status(getattr(exc, "signum", None)),
            f"interrupted at once; the last checkpoint in {run_dir} (if any) is kept "
            f"(continue with: {again})",
        ) from exc
    except TrainingDiverged as exc:
        skippable = exc.cause is None and not config.get("skip_nonfinite")
        hint = "; try a smaller --lr" + (", or --skip-nonfinite to skip such batches" if skippable else "")
        raise CLIError(EXIT_DIVERGED, f"training diverged: {exc} (in {run_dir}/{CHECKPOINT}){hint}") from exc
    if result.status == "interrupted":
        where = (
            f"epoch {result.epoch + 1}, batch {result.batch}"
            if result.batch
            else f"after epoch {result.epoch}"
        )
        raise CLIError(
            interrupted_status(result.signal),
            f"interrupted: checkpoint saved in {run_dir}/{CHECKPOINT} ({where}); continue with: {again}",
        )
    final = result.metrics["final"]
    say(f"final test metrics ({result.metrics['dataset']}):")
    for line in result.recipe.report(final):
        say(line)
    say(f"run directory: {os.path.abspath(run_dir)}")
    say("  metrics.json, checkpoint.npz" + (", " + ", ".join(result.pictures) if result.pictures else ""))
    sys.stdout.flush()
    return EXIT_OK
