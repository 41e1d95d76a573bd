"""Training: one loop for every model, plus a *recipe* per model family.

Files::

    registry.py     model name -> recipe class ("module:Class", imported lazily)   <- add one line here
    recipe.py       Recipe, the base class (the interface below)
    loop.py         train(), evaluate_run(), default_config(): epochs, checkpoints, resume
    stopping.py     Ctrl-C / SIGTERM, NaN or Inf losses (TrainingDiverged, --skip-nonfinite)
    rundir.py       the run directory: lock, leftover temp files, history.jsonl, metrics.json's pace
    datasets.py     ImageData and load_images(): --dataset auto|mnist|fashion-mnist|shapes, --limit-*
    metrics.py      per-pixel MSE/BCE/PSNR, the PCA baseline, metrics.json
    checkpoint.py   checkpoint.npz (model, optimizer, epoch, position, generator state)
    pictures.py     PNGs: image rows, loss curves, code scatter, filters, bar charts, 8-3-8 codes
    progress.py     tqdm bar on a terminal, one line per epoch otherwise, nothing with --quiet
    encoder838.py, autoencoders.py   the recipes of encoder838, ae, conv-ae, denoise
    generative.py   GenerativeRecipe: sampling, --score-samples, the cached scorer
    vae.py, gan.py  the recipes of vae, conv-vae, gan, dcgan (--loss wgan-gp)
    scores.py       Inception Score, FID and class histogram from a digit classifier

Adding a model (e.g. ``stacked-ae``) without touching the files above
---------------------------------------------------------------------
1. Put the network in ``tinyae/models/<name>.py``, built only from ``tinyae.nn``.
2. Write ``tinyae/train/<name>.py`` with a subclass of :class:`Recipe`::

       class StackedRecipe(Recipe):
           summary = "stacked autoencoder: greedy layer-wise pretraining, then fine-tuning"
           description = "..."                    # shown by `tinyae train stacked-ae --help`
           defaults = {"epochs": 20, "batch_size": 128, "lr": 1e-3}
           pictures_made = ("reconstructions.png", "filters.png", "codes.png", "loss.png")

           @classmethod
           def add_arguments(cls, parser):         # the model's own options, with defaults and help
               parser.add_argument("--hidden", type=int, nargs="+", default=[1000, 1000, 1000], help="...")

           @classmethod
           def check_config(cls, config):          # a message -> `tinyae` exits with status 2
               return None if all(h > 0 for h in config["hidden"]) else "--hidden: sizes must be > 0"

           def build(self):                        # the global generator is already seeded
               self.model = ...; self.optimizer = ...

           def train_loader(self, epoch):          # optional: a different loader per phase
               return self.make_loader(self.data.train_set(), key="train")

           def train_step(self, batch, epoch):     # ONE optimizer step; return the loss as a float
               x, y = batch
               ...
               return loss.item()

           def evaluate(self, epoch):              # per-epoch test metrics; must include "test_loss"
               return {"test_loss": ..., "test_accuracy": ...}

           def final_metrics(self):                # metrics.json's "final"; from the model state only
               return {"test_accuracy": ..., "scratch_test_accuracy": ...}

           def pictures(self, out_dir, history):   # draw with tinyae.train.pictures; return file names
               return [pictures.filters(out_dir, w), ...]

3. Register it: one line in ``registry.RECIPES``: ``"stacked-ae": "tinyae.train.stacked:StackedRecipe"``.
   The CLI picks it up (``tinyae train stacked-ae --help`` lists its options).

What a recipe gets: ``self.config`` (all options, underscore names: ``epochs``, ``batch_size``,
``lr``, ``seed``, ``device``, ``dataset``, ``limit_train``, ``limit_test`` and its own),
``self.data`` (:class:`ImageData`: ``x_train``/``y_train``/``x_test``/``y_test`` NumPy arrays,
``train_set()``/``test_set()``, ``classes``, ``name``), ``self.device``; helpers
``self.make_loader(dataset, key=...)`` (seeded, cached DataLoader), ``self.batches(*arrays)``
(fixed-order evaluation batches) and ``self.eval_rng()`` (the same fresh generator each call).

Several models or optimizers (pretraining phases, transfer variants): return them all from
``modules()`` / ``optimizers()`` (dicts by name) and create all of them in ``build()``, so that
a checkpoint can be loaded into a freshly built recipe; put other changing state (a phase
counter, accuracies of finished variants) in ``extra_state()``/``load_extra_state()``. An
*epoch* is the unit of checkpointing and of metrics.json's ``epochs`` list: map global epochs
to phases in ``train_loader``/``train_step`` (e.g. epochs 0-4 pretrain layer 1, ...).

Rules that keep ``--resume`` exact: draw training randomness only from ``tinyae.generator()``;
shuffle only with ``self.make_loader`` loaders; keep all changing state in ``state_dict()``.

Python API::

    from tinyae.train import default_config, train, evaluate_run
    result = train(default_config("ae", epochs=2, dataset="shapes", limit_train=512), "runs/ae")
    print(result.metrics["final"], evaluate_run("runs/ae"))
"""

from tinyae.train.checkpoint import CheckpointError, CorruptCheckpointError, RunDirectoryError
from tinyae.train.datasets import DATASETS, ImageData, load_images
from tinyae.train.loop import RunResult, default_config, evaluate_run, train
from tinyae.train.recipe import Recipe
from tinyae.train.registry import RECIPES, get_recipe, recipe_names
from tinyae.train.rundir import RunDirError
from tinyae.train.stopping import Interrupted, TrainingDiverged

__all__ = [
    "DATASETS",
    "RECIPES",
    "CheckpointError",
    "CorruptCheckpointError",
    "ImageData",
    "Interrupted",
    "Recipe",
    "RunDirError",
    "RunDirectoryError",
    "RunResult",
    "TrainingDiverged",
    "default_config",
    "evaluate_run",
    "get_recipe",
    "load_images",
    "recipe_names",
    "train",
]
