"""tinyae: a from-scratch deep-learning engine for autoencoders, VAEs and GANs."""

__version__ = "0.1.0"
