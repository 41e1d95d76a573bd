"""``tinyae eval RUN_DIR`` and ``tinyae sample RUN_DIR``: use a finished (or interrupted) run.

``eval`` rebuilds the model from checkpoint.npz, recomputes the ``final`` block of
metrics.json and compares it with the stored one: a difference means the
checkpoint is not the state those metrics came from (damaged, replaced, or
weights gone NaN), and ends the command with status 7. ``sample`` draws new
images from a generative run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

from tinyae.cli.errors import EXIT_IO, EXIT_MISMATCH, EXIT_OK, CLIError
from tinyae.cli.train_cmd import check_device

__all__ = ["run_eval", "run_sample", "same_numbers"]

#: relative tolerance of eval's comparison: the same device repeats the same arithmetic...
RTOL_SAME_DEVICE = 1e-6
#: ...another device (cpu vs cuda) rounds differently
RTOL_OTHER_DEVICE = 1e-3


def same_numbers(a: Any, b: Any, rtol: float = RTOL_SAME_DEVICE) -> bool:
    """Equal structures whose numbers agree to ``rtol`` (NaN/Inf are stored as strings in metrics.json)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_numbers(a[k], b[k], rtol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_numbers(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, str) or isinstance(b, str):
            return str(a) == str(b)
        return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=1e-12)
    return a == b


def _short(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _stored_final(run_dir: str) -> tuple[dict[str, Any] | None, str]:
    """metrics.json's ``final`` block, or None and why there is nothing to compare with."""
    from tinyae.train.metrics import read_metrics

    try:
        stored = read_metrics(run_dir).get("final")
    except FileNotFoundError:
        return None, "no metrics.json to compare with"
    except (OSError, ValueError, AttributeError) as exc:
        return None, f"metrics.json cannot be read ({type(exc).__name__}); nothing to compare with"
    if not stored:
        return None, "metrics.json has no final block yet (the run has not finished); nothing to compare with"
    return stored, ""


def run_eval(args: argparse.Namespace) -> int:
    """``tinyae eval RUN_DIR``: print the recomputed final metrics; status 7 when they differ."""
    from tinyae.train.checkpoint import RunDirectoryError
    from tinyae.train.loop import load_run
    from tinyae.train.metrics import jsonable, read_metrics, write_metrics

    parser = args.parser
    if args.device is not None:
        args.device = check_device(parser, args.device)
    try:
        recipe, ckpt = load_run(args.run_dir, data_root=args.data_root, device=args.device)
    except RunDirectoryError as exc:
        parser.error(str(exc))
    overridden = []
    for option, key in (("--samples", "score_samples"), ("--iw-samples", "iw_samples")):
        value = getattr(args, key.replace("score_", ""))
        if value is None:
            continue
        if key not in recipe.config:
            parser.error(f"{option} does not apply to a run of {ckpt['model']!r}")
        if key == "score_samples" and value == 1:
            parser.error("--samples must be 0 (no scores) or at least 2, got 1")
        if value != recipe.config[key]:
            overridden.append(option)
        recipe.config[key] = value
    final = recipe.final_metrics()
    if args.json:
        print(json.dumps(final, indent=2, default=str))
    else:
        where = f"epoch {ckpt['epoch']}" + (f", batch {ckpt['batch']}" if ckpt["batch"] else "")
        print(f"{ckpt['model']} on {recipe.dataset_name()}, checkpoint at {where}: final test metrics")
        for line in recipe.report(final):
            print(line)
    say = (lambda *a: None) if args.json else print
    stored, why = _stored_final(args.run_dir)
    if stored is None:
        say(why)
        return EXIT_OK
    if overridden:
        say(f"not compared with metrics.json: {', '.join(overridden)} differs from the run's")
        return EXIT_OK
    fresh = json.loads(json.dumps(jsonable(final), default=str))
    common = [k for k in fresh if k in stored]
    run_device = ckpt["config"].get("device", "cpu")
    rtol = RTOL_SAME_DEVICE if args.device in (None, run_device) else RTOL_OTHER_DEVICE
    differ = [k for k in common if not same_numbers(stored[k], fresh[k], rtol)]
    if differ:
        shown = ", ".join(f"{k} {_short(fresh[k])} (stored {_short(stored[k])})" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise CLIError(
            EXIT_MISMATCH,
            f"the metrics recomputed from {args.run_dir}/checkpoint.npz differ from its metrics.json: "
            f"{shown}{more}; the checkpoint is not the state those metrics were computed from",
        )
    say("matches metrics.json")
    added = [k for k in fresh if k not in stored]
    if added:  # e.g. sample scores of a run trained with --score-samples 0
        try:
            metrics = read_metrics(args.run_dir)
            metrics["final"] = {**stored, **{k: final[k] for k in added}}
            write_metrics(args.run_dir, metrics)
            say(f"added to metrics.json: {', '.join(added)}")
        except OSError as exc:
            say(f"note: could not add {', '.join(added)} to metrics.json ({exc.strerror or exc})")
    return EXIT_OK


def run_sample(args: argparse.Namespace) -> int:
    """``tinyae sample RUN_DIR --n N --out FILE``."""
    from tinyae.train.checkpoint import CorruptCheckpointError, RunDirectoryError, read_checkpoint
    from tinyae.train.generative import GenerativeRecipe, write_samples
    from tinyae.train.loop import load_run
    from tinyae.train.registry import RECIPES, get_recipe

    parser = args.parser
    if not args.out.lower().endswith((".png", ".npy")):
        parser.error(f"--out {args.out}: the file name must end in .png (a grid) or .npy (an array)")
    if os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a directory; give a file name ending in .png or .npy")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        parser.error(f"--out {args.out}: the folder {out_dir} does not exist")
    if args.device is not None:
        args.device = check_device(parser, args.device)
    try:
        model = str(read_checkpoint(args.run_dir).get("model"))
    except RunDirectoryError as exc:
        parser.error(str(exc))
    try:
        cls = get_recipe(model)
    except KeyError as exc:
        raise CorruptCheckpointError(f"{args.run_dir}: {exc.args[0]}") from exc
    if not issubclass(cls, GenerativeRecipe):
        generative = ", ".join(m for m in RECIPES if issubclass(get_recipe(m), GenerativeRecipe))
        parser.error(f"{args.run_dir} is a run of {model!r}, which does not generate new images; "
                     f"sample works on runs of {generative}")  # fmt: skip
    recipe, ckpt = load_run(args.run_dir, device=args.device)
    try:
        write_samples(recipe, args.n, args.out, seed=args.seed)
    except OSError as exc:
        raise CLIError(EXIT_IO, f"cannot write {args.out}: {exc.strerror or exc}") from exc
    print(f"wrote {args.n} samples of {model} (epoch {ckpt['epoch']}, seed {args.seed}) to {args.out}")
    return EXIT_OK
