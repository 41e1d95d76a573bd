"""The ``tinyae`` command line: every sub-command's options, their checks, help and defaults.

``build_parser()`` returns the whole tree: ``train`` with one sub-command per
registered model (its own options added by the recipe), ``eval``, ``sample`` and
``info``. The commands themselves live in :mod:`tinyae.cli.train_cmd` and
:mod:`tinyae.cli.eval_cmd`; exit statuses in :mod:`tinyae.cli.errors`.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from tinyae.cli.errors import exit_code_table

__all__ = ["EPILOG", "build_parser"]

EPILOG = (
    """\
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
be downloaded, and the built-in Shapes dataset only when no MNIST file is there at all (with a note
saying so); MNIST files that are there but corrupt, truncated or incomplete are an error (status 3).
Each run writes metrics.json, history.jsonl, checkpoint.npz and PNG pictures into --out (default
runs/MODEL-TIMESTAMP). Ctrl-C or SIGTERM saves a checkpoint; --resume continues exactly.

Exit status (one "error:" line on stderr for every failure; --debug adds the traceback):
"""
    + exit_code_table()
    + "\n"
)


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
        help="continue the run in DIR (or in --out) from its checkpoint.npz; only --epochs, --device and "
        "--skip-nonfinite may change",
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
    g.add_argument(
        "--skip-nonfinite",
        action="store_true",
        default=None,
        help="skip the optimizer step of a batch whose loss or gradients are NaN/Inf, instead of stopping "
        "with exit status 6 (may be turned on when resuming)",
    )
    _add_debug(p)


def _add_debug(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a sub-command that is not given --debug leaves the top-level's value alone.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on failure, also print the traceback")  # fmt: skip


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
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
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
        _add_debug(p)

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
    _add_debug(ev)
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
    _add_debug(sa)
    sa.set_defaults(parser=sa)

    info = sub.add_parser(
        "info", help="versions, active kernels, BLAS and GPU", description="Print what tinyae runs on."
    )
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_debug(info)
    info.set_defaults(parser=info)
    return parser
