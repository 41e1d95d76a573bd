"""The ``tinyae`` command: train the lecture's models, evaluate finished runs.

    tinyae train MODEL [options]      train one model into a run directory (tinyae train --help)
    tinyae train MODEL --help         the options of that model
    tinyae eval RUN_DIR               recompute the final test metrics from the run's checkpoint
    tinyae sample RUN_DIR --n N --out FILE   new images from a generative run (vae, conv-vae, gan, dcgan)
    tinyae info                       versions, kernels, BLAS, GPU

Exit status: 0 done, 1 a runtime failure (e.g. the dataset cannot be found), 2 bad
options (argparse's convention: one line saying what is wrong), 130 interrupted
with Ctrl-C (a checkpoint is saved; ``--resume`` continues).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: options that may differ from the saved run when resuming (everything else must match)
RESUMABLE_CHANGES = {"epochs", "device"}

EPILOG = """\
examples:
  tinyae train ae                                  dense autoencoder on MNIST (or Shapes offline)
  tinyae train conv-ae --epochs 5 --out runs/cae   convolutional autoencoder into runs/cae
  tinyae train denoise --noise masking --noise-level 0.3
  tinyae train encoder838 --seeds 20               the 8-3-8 encoder, and a 20-seed sweep
  tinyae train ae --resume runs/ae-20240101-120000 continue an interrupted run
  tinyae eval runs/cae                             recompute the final metrics from the checkpoint
  tinyae train dcgan --out runs/dcgan              a DCGAN; then score it and draw from it:
  tinyae eval runs/dcgan                           Inception Score, FID, class histogram of 10,000 samples
  tinyae sample runs/dcgan --n 64 --out grid.png   (or --out samples.npy: float32 (N, 1, 28, 28) in [0, 1])

Data: --dataset auto uses MNIST when it is found (--data-root, $TINYAE_DATA, ~/.cache/tinyae) or can
be downloaded, else the built-in Shapes dataset (with a note saying why).
Each run writes metrics.json, checkpoint.npz and PNG pictures into --out (default runs/MODEL-TIMESTAMP).
Exit status: 0 done, 1 runtime failure, 2 bad options, 130 interrupted (checkpoint saved).
"""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep our line breaks in descriptions and epilogs; show defaults only where help has no '(default'."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, argparse.SUPPRESS, False):
            return text
        return super()._get_help_string(action)


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_common_train_options(
    p: argparse.ArgumentParser, defaults: dict[str, Any], notes: dict[str, str] | None = None
) -> None:
    from tinyae.train.datasets import DATASETS

    shown = {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in defaults.items()}
    shown.update(notes or {})

    g = p.add_argument_group("training options (every model)")
    g.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="auto: MNIST when found or downloadable, else the built-in Shapes (default auto)",
    )
    g.add_argument("--data-root", metavar="DIR", default=None, help="folder with the dataset files "
                   "(default $TINYAE_DATA, else ~/.cache/tinyae)")  # fmt: skip
    g.add_argument(
        "--epochs", type=_nonnegative_int, default=None, help=f"epochs (default {shown['epochs']})"
    )
    g.add_argument("--batch-size", type=_positive_int, default=None,
                   help=f"mini-batch size (default {shown['batch_size']})")  # fmt: skip
    g.add_argument("--lr", type=_positive_float, default=None, help=f"learning rate (default {shown['lr']})")
    g.add_argument(
        "--seed", type=_nonnegative_int, default=None, help="random seed: init, shuffling, noise (default 0)"
    )
    g.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default cpu)")
    g.add_argument("--out", metavar="DIR", default=None, help="run directory (default runs/MODEL-TIMESTAMP)")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no printed summary")
    g.add_argument(
        "--resume",
        metavar="DIR",
        nargs="?",
        const="",
        default=None,
        help="continue the run in DIR (or in --out) from its checkpoint.npz; only --epochs and --device "
        "may change",
    )
    g.add_argument("--limit-train", type=_positive_int, default=None, metavar="N",
                   help="use only the first N training images")  # fmt: skip
    g.add_argument("--limit-test", type=_positive_int, default=None, metavar="N",
                   help="use only the first N test images")  # fmt: skip
    # Data-parallel training (tinyae.distributed); `mpiexec -n N tinyae train ...` needs neither option.
    g.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="train data-parallel on N local processes, each taking 1/N of every batch "
                   "(started with mpiexec; needs pip install 'tinyae[mpi]'; default 1)")  # fmt: skip
    g.add_argument("--sync-bn", action="store_true", default=None,
                   help="data-parallel: BatchNorm statistics of the whole batch, not per rank")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The full parser: ``train`` with one sub-command per registered model, ``eval``, ``info``."""
    from tinyae.train.registry import get_recipe, recipe_names

    parser = argparse.ArgumentParser(
        prog="tinyae",
        description="tinyae: a from-scratch deep-learning engine. Train the lecture's autoencoders and "
        "look at their pictures and numbers.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    models, broken = [], {}
    for name in recipe_names():
        try:
            models.append(get_recipe(name))
        except Exception as exc:  # one broken recipe must not take the others down
            broken[name] = f"{type(exc).__name__}: {exc}"
    listing = "\n".join(f"  {cls.name:<12} {cls.summary}" for cls in models)
    listing += "".join(f"\n  {name:<12} (unavailable: {why})" for name, why in broken.items())
    train = sub.add_parser(
        "train",
        help="train a model (tinyae train --help lists the models)",
        description=f"Train one of the models into a run directory.\n\nmodels:\n{listing}\n\n"
        "Each model has its own options: tinyae train MODEL --help.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    models_sub = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    for cls in models:
        p = models_sub.add_parser(
            cls.name,
            help=cls.summary,
            description=f"{cls.summary}.\n\n{cls.description}\n\nWrites metrics.json, checkpoint.npz and "
            f"{', '.join(cls.pictures_made)}.",
            formatter_class=_Formatter,
        )
        _add_common_train_options(p, {**cls.defaults}, cls.default_notes)
        cls.add_arguments(p.add_argument_group(f"{cls.name} options"))
        p.set_defaults(recipe=cls, parser=p)

    for name, why in broken.items():
        p = models_sub.add_parser(name, help=f"(unavailable: {why})")
        p.set_defaults(recipe=None, broken=why, parser=p)

    ev = sub.add_parser(
        "eval",
        help="recompute a run's final test metrics from its checkpoint",
        description="Load RUN_DIR/checkpoint.npz, rebuild the model and recompute the `final` block of "
        "metrics.json on the test split (printed; compared with the stored one when there is one).",
        formatter_class=_Formatter,
    )
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by tinyae train")
    ev.add_argument("--data-root", metavar="DIR", default=None, help="folder with the dataset files")
    ev.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's device)")
    ev.add_argument("--json", action="store_true", help="print the final metrics as JSON only")
    ev.add_argument(
        "--samples",
        type=_nonnegative_int,
        default=None,
        metavar="N",
        help="generative runs: samples to score (default: the run's --score-samples)",
    )
    ev.add_argument("--iw-samples", type=_nonnegative_int, default=None, metavar="K",
                    help="VAE runs: codes per test image of test_nll_iwae (default: the run's)")  # fmt: skip
    ev.set_defaults(parser=ev)

    sa = sub.add_parser(
        "sample",
        help="draw new images from a generative run (vae, conv-vae, gan, dcgan)",
        description="Load RUN_DIR/checkpoint.npz of a generative model and write N new images: a PNG grid "
        "(FILE ending in .png) or a NumPy array (.npy) of float32, shape (N, C, H, W), values in [0, 1].",
        formatter_class=_Formatter,
    )
    sa.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by tinyae train")
    sa.add_argument("--n", type=_positive_int, required=True, help="how many images")
    sa.add_argument("--out", metavar="FILE", required=True, help="where to write them: a .png or a .npy file")
    sa.add_argument("--seed", type=_nonnegative_int, default=0, help="seed of the noise (default 0)")
    sa.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's device)")
    sa.set_defaults(parser=sa)

    info = sub.add_parser(
        "info", help="versions, active kernels, BLAS and GPU", description="Print what tinyae runs on."
    )
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(parser=info)
    return parser


# --------------------------------------------------------------------------- train


def _check_device(parser: argparse.ArgumentParser, device: str) -> str:
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
    from tinyae.train.checkpoint import CheckpointError, read_checkpoint

    parser = args.parser
    try:
        ckpt = read_checkpoint(run_dir, args.recipe.name)
    except CheckpointError as exc:
        parser.error(f"--resume: {exc}")
    saved = ckpt["config"]
    if args.epochs is not None and args.epochs < ckpt["epoch"]:
        done = ckpt["epoch"]
        parser.error(f"--resume: --epochs {args.epochs} is fewer than the {done} epochs already done")
    for key, value in config.items():
        if key in RESUMABLE_CHANGES or key == "model" or key not in saved:
            continue
        given = getattr(args, key, None)
        explicit = given is not None and (parser.get_default(key) is None or given != parser.get_default(key))
        if explicit and saved[key] != value:
            option = "--" + key.replace("_", "-")
            parser.error(
                f"--resume: {option} {value} differs from the saved run's {saved[key]}; "
                f"only --epochs and --device may change"
            )
    epochs = args.epochs if args.epochs is not None else saved["epochs"]
    device = args.device if args.device is not None else saved.get("device", "cpu")
    return {**saved, "epochs": epochs, "device": device}


def _cmd_train(args: argparse.Namespace) -> int:
    from tinyae.data import DatasetNotFoundError
    from tinyae.train.checkpoint import CHECKPOINT
    from tinyae.train.loop import train

    parser, cls = args.parser, args.recipe
    if cls is None:
        print(f"tinyae train {args.model}: error: model cannot be loaded ({args.broken})", file=sys.stderr)
        return EXIT_FAILURE
    config = _config_from_args(args)
    message = cls.check_config(config)
    if message:
        parser.error(message)
    config = cls.resolve_config(config)
    config["device"] = _check_device(parser, config["device"])

    resume = args.resume is not None
    if resume:
        run_dir = args.resume or args.out
        if not run_dir:
            parser.error("--resume needs the run directory: --resume DIR (or --out DIR --resume)")
        config = _resume_config(args, config, run_dir)
    else:
        run_dir = args.out or os.path.join("runs", f"{cls.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        if os.path.isfile(os.path.join(run_dir, CHECKPOINT)):
            parser.error(
                f"--out {run_dir} already holds a run; continue it with --resume or choose another --out"
            )

    from tinyae.distributed.training import cli_workers  # data-parallel runs: see tinyae.distributed

    status = cli_workers(args, run_dir)
    if status is not None:
        return status  # --workers N: the N ranks ran (and printed) in processes of their own
    say = (lambda *a: None) if args.quiet else print
    say(f"training {cls.name} -> {run_dir}" + (" (resumed)" if resume else ""))
    try:
        result = train(config, run_dir, resume=resume, quiet=args.quiet, data_root=args.data_root)
    except DatasetNotFoundError as exc:
        print(f"tinyae train: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: stopped at once; the last checkpoint in {run_dir} (if any) is kept "
            f"(continue with: tinyae train {cls.name} --resume {run_dir})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if result.status == "interrupted":
        where = (
            f"epoch {result.epoch + 1}, batch {result.batch}"
            if result.batch
            else f"after epoch {result.epoch}"
        )
        print(
            f"interrupted: checkpoint saved in {run_dir}/{CHECKPOINT} ({where}); "
            f"continue with: tinyae train {cls.name} --resume {run_dir}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    final = result.metrics["final"]
    say(f"final test metrics ({result.metrics['dataset']}):")
    for line in result.recipe.report(final):
        say(line)
    say(f"run directory: {os.path.abspath(run_dir)}")
    say("  metrics.json, checkpoint.npz" + (", " + ", ".join(result.pictures) if result.pictures else ""))
    return EXIT_OK


# --------------------------------------------------------------------------- eval


def _cmd_eval(args: argparse.Namespace) -> int:
    from tinyae.data import DatasetNotFoundError
    from tinyae.train.checkpoint import CheckpointError
    from tinyae.train.loop import load_run
    from tinyae.train.metrics import read_metrics, write_metrics

    parser = args.parser
    if args.device is not None:
        args.device = _check_device(parser, args.device)
    try:
        recipe, ckpt = load_run(args.run_dir, data_root=args.data_root, device=args.device)
    except CheckpointError as exc:
        parser.error(str(exc))
    except DatasetNotFoundError as exc:
        print(f"tinyae eval: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for option, key in (("--samples", "score_samples"), ("--iw-samples", "iw_samples")):
        value = getattr(args, key.replace("score_", ""))
        if value is None:
            continue
        if key not in recipe.config:
            parser.error(f"{option} does not apply to a run of {ckpt['model']!r}")
        if key == "score_samples" and value == 1:
            parser.error("--samples must be 0 (no scores) or at least 2, got 1")
        recipe.config[key] = value
    final = recipe.final_metrics()
    if args.json:
        print(json.dumps(final, indent=2, default=str))
        return EXIT_OK
    where = f"epoch {ckpt['epoch']}" + (f", batch {ckpt['batch']}" if ckpt["batch"] else "")
    print(f"{ckpt['model']} on {recipe.dataset_name()}, checkpoint at {where}: final test metrics")
    for line in recipe.report(final):
        print(line)
    try:
        stored = read_metrics(args.run_dir).get("final")
    except (OSError, ValueError):
        stored = None
    if stored:
        fresh = json.loads(json.dumps(final, default=str))
        common = [k for k in fresh if k in stored]
        same = _same_numbers({k: stored[k] for k in common}, {k: fresh[k] for k in common})
        print("matches metrics.json" if same else "differs from metrics.json's final block")
        added = [k for k in fresh if k not in stored]
        if added:  # e.g. sample scores of a run trained with --score-samples 0
            metrics = read_metrics(args.run_dir)
            metrics["final"] = {**stored, **{k: final[k] for k in added}}
            write_metrics(args.run_dir, metrics)
            print(f"added to metrics.json: {', '.join(added)}")
    return EXIT_OK


# --------------------------------------------------------------------------- sample


def _cmd_sample(args: argparse.Namespace) -> int:
    from tinyae.data import DatasetNotFoundError
    from tinyae.train.checkpoint import CheckpointError, read_checkpoint
    from tinyae.train.generative import GenerativeRecipe, write_samples
    from tinyae.train.loop import load_run
    from tinyae.train.registry import RECIPES, get_recipe

    parser = args.parser
    if not args.out.lower().endswith((".png", ".npy")):
        parser.error(f"--out {args.out}: the file name must end in .png (a grid) or .npy (an array)")
    if args.device is not None:
        args.device = _check_device(parser, args.device)
    try:
        model = str(read_checkpoint(args.run_dir).get("model"))
        if not issubclass(get_recipe(model), GenerativeRecipe):
            generative = ", ".join(m for m in RECIPES if issubclass(get_recipe(m), GenerativeRecipe))
            parser.error(f"{args.run_dir} is a run of {model!r}, which does not generate new images; "
                         f"sample works on runs of {generative}")  # fmt: skip
        recipe, ckpt = load_run(args.run_dir, device=args.device)
    except (CheckpointError, KeyError) as exc:
        parser.error(str(exc).strip("'\""))
    except DatasetNotFoundError as exc:
        print(f"tinyae sample: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        parser.error(f"--out {args.out}: the folder {out_dir} does not exist")
    write_samples(recipe, args.n, args.out, seed=args.seed)
    print(f"wrote {args.n} samples of {model} (epoch {ckpt['epoch']}, seed {args.seed}) to {args.out}")
    return EXIT_OK


def _same_numbers(a: Any, b: Any, rtol: float = 1e-6) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_numbers(a[k], b[k], rtol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_numbers(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, str) or isinstance(b, str):  # inf/nan stored as strings
            return str(a) == str(b)
        return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=1e-12)
    return a == b


# --------------------------------------------------------------------------- main


def _cmd_info(args: argparse.Namespace) -> int:
    import tinyae

    info = getattr(tinyae, "info", None)
    if info is None:  # an engine without the info report: versions only
        import numpy as np

        print(f"tinyae {tinyae.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
        return EXIT_OK
    if args.json:
        print(json.dumps(info(print_report=False), indent=2, default=str))
    else:
        info()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tinyae`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if extra:  # reported by the sub-command's parser, so the usage line shows that command's options
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --workers N` starts N copies of it
    if args.command == "train":
        return _cmd_train(args)
    if args.command == "eval":
        return _cmd_eval(args)
    if args.command == "sample":
        return _cmd_sample(args)
    return _cmd_info(args)


if __name__ == "__main__":
    sys.exit(main())
