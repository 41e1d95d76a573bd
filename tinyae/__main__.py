"""``python -m tinyae COMMAND``: ``info`` is handled here; ``train``/``eval`` go to :mod:`tinyae.cli`.

``info`` does not import the CLI (nor the training code and its optional libraries),
so it works on a bare install; ``info --json`` prints the same report as JSON.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence

USAGE = """\
usage: python -m tinyae COMMAND [options]

commands:
  info [--json]     versions, active kernels (C++ or NumPy), kernel threads, BLAS, CuPy/GPU
  train MODEL ...   train a model (needs tinyae.cli)
  eval RUN_DIR      evaluate a finished run (needs tinyae.cli)"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "info":
        from tinyae._info import info

        extra = args[1:]
        if extra not in ([], ["--json"]):
            print(f"info: unexpected arguments {extra}\n{USAGE}", file=sys.stderr)
            return 2
        if extra == ["--json"]:
            print(json.dumps(info(print_report=False), indent=2))
        else:
            info()
        return 0
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    try:
        cli = importlib.import_module("tinyae.cli")  # lazily: it pulls in the training code
    except ModuleNotFoundError as exc:
        if exc.name != "tinyae.cli":
            raise
        print(
            f"unknown command {args[0]!r} (the training CLI tinyae.cli is not installed)\n{USAGE}",
            file=sys.stderr,
        )
        return 2
    return int(cli.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
