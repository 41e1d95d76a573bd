"""The recipe registry: model name on the command line -> the class that trains it.

Each entry is a ``"module:Class"`` string, imported only when that model is
asked for, so ``tinyae --help`` stays fast and a broken recipe cannot break
the others. Adding a model is ONE line here (see :mod:`tinyae.train`)::

    "stacked-ae": "tinyae.train.stacked:StackedRecipe",
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyae.train.recipe import Recipe

__all__ = ["RECIPES", "get_recipe", "recipe_names"]

#: CLI name -> "module:Class" of its :class:`~tinyae.train.recipe.Recipe` subclass (help order).
RECIPES: dict[str, str] = {
    "encoder838": "tinyae.train.encoder838:Encoder838Recipe",
    "ae": "tinyae.train.autoencoders:AutoencoderRecipe",
    "conv-ae": "tinyae.train.autoencoders:ConvAutoencoderRecipe",
    "denoise": "tinyae.train.autoencoders:DenoiseRecipe",
    "stacked-ae": "tinyae.train.stacked:StackedRecipe",
    "transfer": "tinyae.train.transfer:TransferRecipe",
    "vae": "tinyae.train.vae:VAERecipe",
    "conv-vae": "tinyae.train.vae:ConvVAERecipe",
    "gan": "tinyae.train.gan:GANRecipe",
    "dcgan": "tinyae.train.gan:DCGANRecipe",
}


def recipe_names() -> list[str]:
    """The model names ``tinyae train`` accepts, in help order."""
    return list(RECIPES)


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered under ``name``; KeyError naming the choices if unknown."""
    if name not in RECIPES:
        raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(RECIPES)}")
    module_name, _, class_name = RECIPES[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    cls.name = name  # the registered name is the truth (checkpoints and metrics.json use it)
    return cls
