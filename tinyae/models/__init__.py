"""The lecture's models, each built only from :mod:`tinyae.nn` (one file per topic).

    encoder838   Encoder838            the 8-3-8 encoding problem
    autoencoder  Autoencoder           dense autoencoder r = g(f(x))
    conv_ae      ConvAutoencoder       strided convolutions down, transposed convolutions up
    denoise      DenoisingAutoencoder  trained on corrupted inputs; make_noise() picks the corruption
    stacked      StackedAutoencoder    greedy layer-wise pretraining; StackedClassifier fine-tunes the stack
    transfer     TransferAutoencoder   an encoder pretrained without labels; TransferClassifier on few labels
    vae          VAE, ConvVAE          variational autoencoders: a probabilistic decoder to sample from
    gan          mlp_/dcgan_generator, mlp_/dcgan_discriminator   the two players of a GAN
    classifier   DigitClassifier       the small CNN that scores generated digits (tinyae.train.scores)

How each is trained (losses, optimizers, metrics, pictures) lives in :mod:`tinyae.train`.
"""

from tinyae.models.autoencoder import Autoencoder
from tinyae.models.classifier import DigitClassifier
from tinyae.models.conv_ae import ConvAutoencoder
from tinyae.models.denoise import NOISE_KINDS, DenoisingAutoencoder, make_noise
from tinyae.models.encoder838 import Encoder838, binary_codes, one_hot_patterns
from tinyae.models.gan import dcgan_discriminator, dcgan_generator, mlp_discriminator, mlp_generator
from tinyae.models.stacked import StackedAutoencoder, StackedClassifier
from tinyae.models.transfer import TransferAutoencoder, TransferClassifier
from tinyae.models.vae import VAE, ConvVAE, VariationalAutoencoder

__all__ = [
    "NOISE_KINDS",
    "VAE",
    "Autoencoder",
    "ConvAutoencoder",
    "ConvVAE",
    "DenoisingAutoencoder",
    "DigitClassifier",
    "Encoder838",
    "StackedAutoencoder",
    "StackedClassifier",
    "TransferAutoencoder",
    "TransferClassifier",
    "VariationalAutoencoder",
    "binary_codes",
    "dcgan_discriminator",
    "dcgan_generator",
    "make_noise",
    "mlp_discriminator",
    "mlp_generator",
    "one_hot_patterns",
]
