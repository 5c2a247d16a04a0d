"""Generative adversarial networks.

A generator ``G`` maps noise ``z`` ``(n, latent)`` to samples ``(n, d)``; a discriminator
``D`` maps samples to a **logit** ``(n,)`` whose sigmoid is the probability "real". The game
(Goodfellow et al., 2014) is

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 − D(G(z)))].

Every loss here takes logits, never probabilities, so it is computed with ``softplus``
(``log(1 + e^t)``) and stays finite when ``D`` is certain:

* :func:`discriminator_loss` — ``−E[log D(x)] − E[log(1 − D(G(z)))]`` (binary cross-entropy);
* :func:`generator_loss` — ``"saturating"``: ``E[log(1 − D(G(z)))]`` (the minimax loss, whose
  gradient vanishes when ``D`` rejects the fakes) or ``"non_saturating"``: ``−E[log D(G(z))]``;
* :func:`wgan_critic_loss`, :func:`wgan_generator_loss` and :func:`gradient_penalty` — WGAN-GP
  (Arjovsky et al., 2017; Gulrajani et al., 2017): the critic outputs an unbounded score;
* :func:`optimal_discriminator` — ``D*(x) = p_data(x) / (p_data(x) + p_g(x))``;
* :class:`MLPGenerator`, :class:`MLPDiscriminator` and :func:`train_gan` — small networks and
  a readable alternating training loop, enough for 1-D/2-D toy data and 8×8 digits; with
  ``num_classes`` both networks read a one-hot class, a conditional GAN (Mirza & Osindero, 2014);
* :func:`mode_coverage` — how many modes of a Gaussian mixture a sampler covers, and the share
  of its samples that land near a mode;
* :func:`precision_recall` — k-NN precision, recall (Kynkäänniemi et al., 2019) and coverage
  (Naeem et al., 2020) of samples against real data: quality and diversity as two numbers.
"""

from zen.gan.losses import (
    GENERATOR_LOSSES,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    optimal_discriminator,
    wgan_critic_loss,
    wgan_generator_loss,
)
from zen.gan.metrics import ModeReport, PrecisionRecall, mode_coverage, precision_recall
from zen.gan.networks import MLPDiscriminator, MLPGenerator
from zen.gan.training import TRAIN_LOSSES, GANHistory, train_gan

__all__ = [
    "GENERATOR_LOSSES",
    "TRAIN_LOSSES",
    "GANHistory",
    "MLPDiscriminator",
    "MLPGenerator",
    "ModeReport",
    "PrecisionRecall",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "mode_coverage",
    "optimal_discriminator",
    "precision_recall",
    "train_gan",
    "wgan_critic_loss",
    "wgan_generator_loss",
]
