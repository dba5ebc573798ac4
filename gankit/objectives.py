"""The GAN objective, written once for every backend: losses, label targets, penalties.

Everything here is arithmetic on a backend's tensors (which support ``+ - * /`` with each
other and with Python numbers) and calls of its primitives (``gankit.backend.Primitives``),
so a new backend implements primitives and gets every loss and penalty. The update orders
and the EMA of the generator that use these are in ``gankit.updates``.

D's outputs are called logits throughout: a score per image, turned into a probability
only by the losses that need one (``bce``, ``minimax``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Loss", "LOSSES", "PENALTIES", "bce", "label_targets", "gradient_penalty", "squared_gradient_penalty"]


@dataclass(frozen=True)
class Loss:
    """One adversarial objective. ``d_loss(ops, real, fake, real_target, fake_target)`` and
    ``g_loss(ops, fake, real)`` take D's outputs; targets are None for losses without labels,
    and ``g_loss`` gets D's outputs on real images only when the loss is ``relativistic``."""

    name: str
    description: str
    d_loss: Callable
    g_loss: Callable
    uses_targets: bool
    probabilities: bool
    """D's outputs are logits of "real": ``d_real``/``d_fake`` report them through a sigmoid."""
    relativistic: bool = False
    """G's loss compares each fake image's score with a real one's, so its update sees D(x) too."""
    boundary: float = 0.0
    """The output between D's verdicts "real" and "fake": ADA's overfitting heuristic is the
    mean sign of D(x_real) - boundary (0.5 for lsgan, whose targets are 1 and 0)."""


def bce(ops, logits, target):
    """Binary cross-entropy of sigmoid(logits) against ``target`` (a number or a tensor), mean
    over the batch: ``softplus(x) - t x``, which is stable for any logit."""
    return ops.mean(ops.softplus(logits) - logits * target)


def _bce_d(ops, real, fake, real_target, fake_target):
    return bce(ops, real, real_target) + bce(ops, fake, fake_target)


def _lsgan_d(ops, real, fake, real_target, fake_target):
    real_error, fake_error = real - real_target, fake - fake_target
    return 0.5 * ops.mean(real_error * real_error) + 0.5 * ops.mean(fake_error * fake_error)


def _hinge_d(ops, real, fake, real_target, fake_target):
    return ops.mean(ops.relu(1.0 - real)) + ops.mean(ops.relu(1.0 + fake))


def _wasserstein_d(ops, real, fake, real_target, fake_target):
    return ops.mean(fake) - ops.mean(real)


def _critic_g(ops, fake, real):
    return -ops.mean(fake)


def _rpgan_d(ops, real, fake, real_target, fake_target):
    return ops.mean(ops.softplus(fake - real))


def _rpgan_g(ops, fake, real):
    return ops.mean(ops.softplus(real - fake))


LOSSES: dict[str, Loss] = {loss.name: loss for loss in (
    Loss("bce", "non-saturating: G maximises log D(G(z)) (Goodfellow et al. 2014, as everyone trains it)",
         _bce_d, lambda ops, fake, real: bce(ops, fake, 1.0), uses_targets=True, probabilities=True),
    Loss("minimax", "the original: G minimises log(1 - D(G(z)))",
         _bce_d, lambda ops, fake, real: -bce(ops, fake, 0.0), uses_targets=True, probabilities=True),
    Loss("lsgan", "least squares (Mao et al. 2017): D's output pulled to 1 for real, 0 for fake",
         _lsgan_d, lambda ops, fake, real: 0.5 * ops.mean((fake - 1.0) * (fake - 1.0)), uses_targets=True, probabilities=False,
         boundary=0.5),
    Loss("hinge", "hinge (Lim & Ye 2017; SNGAN, BigGAN): D's margin 1 on each side, G raises D's score",
         _hinge_d, _critic_g, uses_targets=False, probabilities=False),
    Loss("wasserstein", "Wasserstein critic (Arjovsky et al. 2017): pair with the gp penalty or clip_value",
         _wasserstein_d, _critic_g, uses_targets=False, probabilities=False),
    Loss("rpgan", "relativistic pairing (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): each fake image "
         "against a real one, softplus(D(fake) - D(real)); pair with the r1 and r2 penalties",
         _rpgan_d, _rpgan_g, uses_targets=False, probabilities=False, relativistic=True),
)}


def label_targets(ops, real_logits, fake_logits, smoothing: float, noise: float):
    """D's targets: ``1 - smoothing`` for real images and 0 for fake ones, each moved toward
    the other by up to ``noise`` (uniform, from the backend's noise generator). Plain numbers
    when there is no noise."""
    real, fake = 1.0 - smoothing, 0.0
    if noise:
        real = real - ops.batch_uniform(real_logits) * noise
        fake = fake + ops.batch_uniform(fake_logits) * noise
    return real, fake


def gradient_penalty(ops, discriminate, real, fake):
    """WGAN-GP (Gulrajani et al. 2017): D's gradient norm at random interpolates of real and
    fake images, pulled to 1: ``mean((|grad D(x_hat)| - 1)^2)``."""
    alpha = ops.batch_uniform(real)
    _, gradient = ops.input_gradient(discriminate, real + alpha * (fake - real))
    norm = ops.sqrt(ops.sum_per_sample(gradient * gradient) + 1e-12)
    return ops.mean((norm - 1.0) * (norm - 1.0))


def squared_gradient_penalty(gradient, ops):
    """R1 (Mescheder et al. 2018) given D's gradient at the real images, R2 at the fake ones:
    ``mean(|grad|^2) / 2``, so that a recipe's weight is the papers' gamma."""
    return 0.5 * ops.mean(ops.sum_per_sample(gradient * gradient))


PENALTIES = {
    "gp": "WGAN-GP: D's gradient norm on random interpolates of real and fake images pulled to 1",
    "r1": "R1: D's squared gradient norm on real images (StyleGAN's; every = k applies it lazily, weight x k)",
    "r2": "R2: D's squared gradient norm on generated images (R3GAN's objective is rpgan with r1 and r2)",
}
