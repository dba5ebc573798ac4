"""How the two networks are updated, written once for every backend: the update orders,
``d_steps``, the penalties' schedule, spectral-norm iterations, the learning rates
(``gankit.schedules``) and the generator's EMA.

A backend runs ``Updates.step`` with its primitives (``gankit.backend.Primitives``). What a
step does beyond the plain updates (which penalties are due, the EMA's decay, the learning
rates) depends only on the step's index (and the run's length) and is decided in Python
first (``plan``), so that a backend that compiles its step (TensorFlow) traces it once per
distinct plan.

A conditional run hands the real batches' labels with them; each fake batch gets labels
drawn uniformly (``ops.fake_labels``), the generator makes images of those classes and the
discriminator judges every image together with its label. Penalties on real images (and
gp's interpolates) use the real labels.

With ``train.augment`` the discriminator sees every image through a differentiable
augmentation (``gankit.augment``): each update's real and fake batches through transforms of
their own, drawn in numpy before the step and handed in as backend tensors (``augment``); the
penalties differentiate through it, and so does the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from math import prod

from gankit import nn
from gankit.augment import CALLS_PER_UPDATE, NEEDED_PRIMITIVES, Augmentation, augment
from gankit.objectives import LOSSES, gradient_penalty, label_targets, squared_gradient_penalty
from gankit.schedules import learning_rates, scheduled
from gankit.train_config import TrainConfig

__all__ = ["Plan", "Updates", "update_ema", "check_supported"]


@dataclass(frozen=True)
class Plan:
    due: tuple[bool, ...]
    """For each of ``train.penalties``: whether it applies at this step."""
    ema_decay: float | None
    """The EMA's decay at this step (0 during the warm-up: the average copies the generator)."""
    learning_rates: tuple[float, float] | None = None
    """``(lr_g, lr_d)`` at this step (``gankit.schedules``; scalar tensors in a compiled step);
    None: the optimizers keep the recipe's rates, never set (constant, without warm-up)."""


class Updates:
    def __init__(self, train: TrainConfig, seed: int = 0, shape: tuple[int, int, int] | None = None):
        """``seed`` and the images' ``shape`` (H, W, C) are needed by an augmented run only."""
        self.train = train
        self.loss = LOSSES[train.loss]
        self.augmentation = None
        if train.augment is not None and shape is not None:
            self.augmentation = Augmentation(train.augment, seed, shape, train.batch_size, train.d_steps)
            self.pixels = prod(shape)

    def augment_inputs(self, step: int, p: float | None = None) -> dict:
        """The numpy arrays of step ``step``'s augmentations, for the backend to hand to ``step``
        as tensors: {} without augmentation. ``p``: the probability now (an adaptive run's,
        from its controller); None: the recipe's fixed p, or 0 for an adaptive p."""
        if self.augmentation is None:
            return {}
        if p is None:
            p = 0.0 if self.train.augment.adaptive else self.train.augment.probability
        return self.augmentation.draws(step, p)

    @property
    def reuses_graph(self) -> bool:
        """Whether a step takes two gradients from one forward pass (the simultaneous update),
        so that a backend that frees the graph after a gradient must keep it."""
        return self.train.update == "simultaneous"

    def plan(self, step: int) -> Plan:
        """What step ``step`` (0-based) does; a penalty with ``every = k`` applies at steps 0, k, 2k...
        A learning-rate schedule runs over ``train.steps``, which gankit sets to the run's
        length when it builds the trainer."""
        due = tuple(step % penalty.every == 0 for penalty in self.train.penalties)
        decay = None if self.train.ema is None else (0.0 if step < self.train.ema_warmup else self.train.ema)
        if scheduled(self.train) and self.train.steps is None:
            raise ValueError("train.lr_schedule needs the run's length: build the trainer with train.steps set")
        return Plan(due, decay, learning_rates(self.train, step, self.train.steps))

    def step(self, ops, reals: list, plan: Plan, ema_decay=None, labels: list | None = None,
             augment: dict | None = None) -> dict:
        """One generator update and ``d_steps`` discriminator updates on ``reals`` (images in
        [-1, 1]) and, for a conditional run, their ``labels``; returns the step's scalars as
        backend tensors. ``ema_decay`` overrides ``plan.ema_decay`` with a backend tensor (so
        a compiled step need not retrace). ``augment``: ``augment_inputs`` as backend tensors."""
        if plan.learning_rates is not None:
            for network, rate in zip(("generator", "discriminator"), plan.learning_rates):
                ops.set_learning_rate(network, rate)
        ops.advance_spectral_norm("generator")
        labels = labels if labels is not None else [None] * len(reals)
        views = [self._view(ops, augment, call) for call in range(CALLS_PER_UPDATE * len(reals))]
        if self.train.update == "simultaneous":
            values = self._simultaneous(ops, reals[0], labels[0], plan.due, views)
        else:
            values = self._alternating(ops, reals, labels, plan.due, views)
        if plan.ema_decay is not None:
            update_ema(ops, plan.ema_decay if ema_decay is None else ema_decay)
        return values

    def _view(self, ops, inputs: dict | None, call: int):
        """What D sees of a batch at augmentation call ``call`` of the step: the images
        themselves, or the images through that call's transform."""
        if not inputs:
            return lambda images: images
        draw = {name: value[call] for name, value in inputs.items()}
        return lambda images: augment(ops, images, draw, self.pixels)

    @staticmethod
    def _fake(ops, real, real_labels):
        """A fake batch the size of ``real``, and its labels (None when unconditional)."""
        fake_labels = None if real_labels is None else ops.fake_labels(real)
        return ops.forward_generator(ops.latent(real), fake_labels), fake_labels

    def _alternating(self, ops, reals, labels, due, views):
        """``d_steps`` discriminator updates, each on its own real batch; then one generator
        update through the updated discriminator, on the last fake batch."""
        for index, (real, real_labels) in enumerate(zip(reals, labels)):
            see_real, see_fake = views[CALLS_PER_UPDATE * index], views[CALLS_PER_UPDATE * index + 1]
            ops.advance_spectral_norm("discriminator")
            g_tape = ops.tape()
            with g_tape:
                fake, fake_labels = self._fake(ops, real, real_labels)
            with ops.tape() as d_tape:
                d_loss, real_out, fake_out, extra = self._discriminator_loss(
                    ops, real, ops.stop_gradient(fake), real_labels, fake_labels, due, see_real, see_fake, detached=True)
            ops.apply("discriminator", d_tape.gradient(d_loss, "discriminator"))
        real_scores = None
        if self.loss.relativistic:
            real_scores = ops.stop_gradient(ops.forward_discriminator(see_real(real), real_labels))
        with g_tape:
            g_loss = self.loss.g_loss(ops, ops.forward_discriminator(see_fake(fake), fake_labels), real_scores)
        ops.apply("generator", g_tape.gradient(g_loss, "generator"))
        return self._metrics(ops, d_loss, g_loss, real_out, fake_out, extra)

    def _simultaneous(self, ops, real, real_labels, due, views):
        """Both losses from one forward pass, each network's gradients from its own loss (the
        TensorFlow tutorial's two-tape step)."""
        ops.advance_spectral_norm("discriminator")
        with ops.tape() as g_tape, ops.tape() as d_tape:
            fake, fake_labels = self._fake(ops, real, real_labels)
            d_loss, real_out, fake_out, extra = self._discriminator_loss(
                ops, real, fake, real_labels, fake_labels, due, views[0], views[1], detached=False)
            g_loss = self.loss.g_loss(ops, fake_out, ops.stop_gradient(real_out) if self.loss.relativistic else None)
        g_gradients, d_gradients = g_tape.gradient(g_loss, "generator"), d_tape.gradient(d_loss, "discriminator")
        ops.apply("discriminator", d_gradients)
        ops.apply("generator", g_gradients)
        return self._metrics(ops, d_loss, g_loss, real_out, fake_out, extra)

    def _discriminator_loss(self, ops, real, fake, real_labels, fake_labels, due, see_real, see_fake, detached: bool):
        """D's loss with every penalty due at this step (weight x every, so a lazy penalty
        keeps its average strength), D's outputs, and each penalty's value. ``detached``: the
        fake images carry no graph to G, so R2 may take its gradient in the same pass."""
        penalties = [penalty for penalty, is_due in zip(self.train.penalties, due) if is_due]
        uses = {penalty.use for penalty in penalties}
        on_real = lambda images: ops.forward_discriminator(see_real(images), real_labels)  # noqa: E731
        on_fake = lambda images: ops.forward_discriminator(see_fake(images), fake_labels)  # noqa: E731
        if "r1" in uses:
            real_out, real_gradient = ops.input_gradient(on_real, real)
        else:
            real_out = on_real(real)
        if "r2" in uses and detached:
            fake_out, fake_gradient = ops.input_gradient(on_fake, fake)
        else:
            fake_out = on_fake(fake)
            if "r2" in uses:
                _, fake_gradient = ops.input_gradient(on_fake, ops.stop_gradient(fake))
        real_target, fake_target = (label_targets(ops, real_out, fake_out, self.train.label_smoothing, self.train.label_noise)
                                    if self.loss.uses_targets else (None, None))
        loss = self.loss.d_loss(ops, real_out, fake_out, real_target, fake_target)
        values = {}
        for penalty in penalties:
            if penalty.use == "gp":
                value = gradient_penalty(ops, on_real, real, fake)
            else:
                value = squared_gradient_penalty(real_gradient if penalty.use == "r1" else fake_gradient, ops)
            loss = loss + value * (penalty.weight * penalty.every)
            values[f"d_{penalty.use}"] = value
        return loss, real_out, fake_out, values

    def _metrics(self, ops, d_loss, g_loss, real_out, fake_out, extra) -> dict:
        """d_loss (penalties included), g_loss, D's mean output on real and fake images (a
        probability for bce and minimax, D's raw score otherwise), each penalty, and with
        augmentation ADA's overfitting heuristic E[sign(D(x_real))] of the last D update (D's
        output measured from the loss's boundary between "real" and "fake")."""
        shown = ops.sigmoid if self.loss.probabilities else (lambda x: x)
        values = {"d_loss": d_loss, "g_loss": g_loss,
                  "d_real": ops.mean(shown(real_out)), "d_fake": ops.mean(shown(fake_out)), **extra}
        if self.augmentation is not None:
            values["d_real_sign"] = ops.mean(ops.sign(real_out - self.loss.boundary))
        return {name: ops.stop_gradient(value) for name, value in values.items()}


def update_ema(ops, decay) -> None:
    """average <- decay * average + (1 - decay) * live, for every trainable weight of the
    generator; its other state (BatchNorm statistics, spectral-norm vectors) is copied."""
    for average, live in ops.ema_weights():
        ops.assign(average, live + (average - live) * decay)
    for average, live in ops.ema_state():
        ops.assign(average, live)


NEEDED = {"gp": ("input_gradient", "batch_uniform"), "r1": ("input_gradient",), "r2": ("input_gradient",),
          "augment": NEEDED_PRIMITIVES,
          "ema": ("ema_weights", "ema_state", "assign"), "spectral_norm": ("advance_spectral_norm", "matvec"),
          "conditional": ("fake_labels",), "lr_schedule": ("set_learning_rate",)}
"""The primitives each option needs beyond the plain losses."""


def check_supported(train: TrainConfig, architecture, primitives) -> None:
    """Raise ValueError, naming the recipe key, for an option this backend or architecture
    cannot do: before anything runs."""

    def lacking(option: str) -> str:
        missing = [name for name in NEEDED[option] if not callable(getattr(primitives, name, None))]
        return f"the backend lacks the primitive(s) {', '.join(missing)} it needs" if missing else ""

    discriminator = getattr(architecture, "discriminator", None)
    for index, penalty in enumerate(train.penalties):
        if problem := lacking(penalty.use):
            raise ValueError(f"train.penalties.{index}: {penalty.use}: {problem}; remove the penalty")
        if penalty.use == "gp" and discriminator is not None and any(
                isinstance(layer, nn.BatchNorm) for layer in discriminator.layers):
            raise ValueError(f"train.penalties.{index}: gp penalises each image's gradient, which BatchNorm in the "
                             "discriminator mixes across the batch; remove D's BatchNorm or the penalty")
    if train.augment is not None and (problem := lacking("augment")):
        raise ValueError(f"train.augment: {problem}; remove train.augment")
    if train.ema is not None and (problem := lacking("ema")):
        raise ValueError(f"train.ema: {problem}; remove train.ema")
    networks = [getattr(architecture, name, None) for name in ("generator", "discriminator")]
    normalised = any(getattr(layer, "spectral_norm", False) for net in networks if net is not None for layer in net.layers)
    if normalised and (problem := lacking("spectral_norm")):
        raise ValueError(f"architecture: spectral normalisation: {problem}; turn it off")
    if scheduled(train) and (problem := lacking("lr_schedule")):
        key = "lr_schedule" if train.lr_schedule != "constant" else "lr_warmup"
        raise ValueError(f"train.{key}: {problem}; remove train.lr_schedule and train.lr_warmup")
    if getattr(architecture, "classes", 0) and (problem := lacking("conditional")):
        raise ValueError(f"architecture: a conditional architecture: {problem}; choose an unconditional one")
