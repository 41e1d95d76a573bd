"""The ``tinyae`` command: train the lecture's models, evaluate finished runs.

    tinyae train MODEL [options]      train one model into a run directory (tinyae train --help)
    tinyae train MODEL --help         the options of that model
    tinyae eval RUN_DIR               recompute the final test metrics from the run's checkpoint
    tinyae sample RUN_DIR --n N --out FILE   new images from a generative run (vae, conv-vae, gan, dcgan)
    tinyae info                       versions, kernels, BLAS, GPU

Files: ``parser.py`` (options and help), ``train_cmd.py`` and ``eval_cmd.py`` (the
commands), ``errors.py`` (exit statuses). :func:`main` runs a command and turns
whatever stops it into one ``error:`` line and the exit status of its kind:

    0 done, 1 internal error, 2 bad options, 3 data, 4 checkpoint, 5 file system,
    6 training diverged, 7 eval mismatch, 130 Ctrl-C, 143 SIGTERM

(the table with explanations: :mod:`tinyae.cli.errors`). Bad options exit through
argparse (``SystemExit(2)``, with the usage line); every other status is returned.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tinyae.cli.errors import EXIT_CODES, EXIT_OK, classify
from tinyae.cli.parser import build_parser

__all__ = ["EXIT_CODES", "build_parser", "main"]


def _run_info(args: argparse.Namespace) -> int:
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


def _commands() -> dict[str, Callable[[argparse.Namespace], int]]:
    from tinyae.cli.eval_cmd import run_eval, run_sample
    from tinyae.cli.train_cmd import run_train

    return {"train": run_train, "eval": run_eval, "sample": run_sample, "info": _run_info}


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Python warnings as one ``warning: ...`` line each, without the source line Python adds."""

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None):
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tinyae`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    from tinyae.train.stopping import terminate_as_interrupt

    parser = build_parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if extra:  # reported by the sub-command's parser, so the usage line shows that command's options
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --workers N` starts N copies of it
    command = _commands()[args.command]
    with terminate_as_interrupt(), _warnings_as_lines():
        try:
            return command(args)
        except SystemExit:
            raise  # argparse's usage errors (status 2) say what is wrong themselves
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one line and a status
            if args.debug:
                traceback.print_exc()
            status, message = classify(exc)
            name = f"tinyae {args.command}"
            print(f"{name}: error: {message}", file=sys.stderr, flush=True)
            return status


if __name__ == "__main__":
    sys.exit(main())
