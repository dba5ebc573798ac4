"""Training one step at a time on TensorFlow: each step is one ``tf.function``.

The latent noise is a function of the seed and the step (``gankit.noise``); the other
random state lives in variables so that a checkpoint holds all of it: label noise comes
from a ``tf.random.Generator``, and each Dropout layer draws stateless masks from a Keras
seed generator whose state is checkpointed with the models. A run resumed from a
checkpoint therefore continues exactly as if it had never stopped.

On CPU the trainer turns on ``tf.config.experimental.enable_op_determinism()`` (for the
whole process, as TensorFlow only allows), so the same recipe and seed give the same
losses; on GPU it is left off for speed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gankit.backend import BackendError, CheckpointError
from gankit.noise import fixed_noise, sample_noise, training_noise
from gankit_plugins.tensorflow_backend import import_tensorflow
from gankit_plugins.tensorflow_backend.compile import compile_network, dropout_seed_states
from gankit_plugins.tensorflow_backend.optimizers import Adam, RMSprop

tf = import_tensorflow()
keras = tf.keras
CHECKPOINT = "checkpoint"
"""The prefix of the checkpoint files in a checkpoint directory (``.index``, ``.data-*``)."""


def resolve_device(name: str) -> str:
    """A TensorFlow device name for ``auto``, ``cpu``, ``gpu``, ``gpu:N`` (or ``cuda[:N]``).
    GPUs get memory as needed, as on torch, rather than all of it up front."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: keep its setting
            pass
    if name == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if name == "cpu":
        return "/CPU:0"
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= len(gpus):
        found = f"{len(gpus)} GPU(s) are visible to TensorFlow" if gpus else "TensorFlow sees no GPU here"
        raise BackendError(f"device {name!r} is not available ({found}); use device = \"auto\" or \"cpu\"")
    return f"/GPU:{index}"


def set_threads(threads: int) -> None:
    if not threads or tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        raise BackendError("backend.threads cannot change once TensorFlow has started in this process; "
                           "run this recipe on its own") from None


def to_uint8(images):
    """Generator output in [-1, 1] -> uint8, NHWC already."""
    return tf.cast(tf.round((tf.clip_by_value(images, -1.0, 1.0) + 1.0) * 127.5), tf.uint8)


def _bce(logits, targets):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits))


class TensorflowTrainer:
    def __init__(self, params, architecture, spec, train, seed: int):
        if architecture.generator is None:
            raise BackendError("this architecture gives no gankit.nn description for the tensorflow backend")
        set_threads(params.threads)
        self.device = resolve_device(params.device)
        if self.device.startswith("/CPU"):
            tf.config.experimental.enable_op_determinism()
        self.train, self.latent_dim, self.seed = train, architecture.latent_dim, seed
        with tf.device(self.device):
            self.generator = compile_network(architecture.generator, seed, "generator")
            self.discriminator = compile_network(architecture.discriminator, seed + 1, "discriminator")
            self.opt_g = self._optimizer(train.lr_g, self.generator)
            self.opt_d = self._optimizer(train.lr_d, self.discriminator)
            self.noise = tf.random.Generator.from_seed(seed + 1)  # label noise
            self.fixed_noise = tf.Variable(fixed_noise(seed, train.samples, self.latent_dim), trainable=False,
                                           name="fixed_noise")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(
            generator=self.generator, discriminator=self.discriminator, opt_g=self.opt_g, opt_d=self.opt_d,
            step=self.step, noise=self.noise, fixed_noise=self.fixed_noise,
            g_dropout=dropout_seed_states(self.generator), d_dropout=dropout_seed_states(self.discriminator),
        )
        self.images = None
        self.steps_taken = 0  # self.step, kept on the host so that reading it does not wait for the device
        # One trace for the whole run: the schedule always hands over d_steps full batches.
        step = self._simultaneous_step if train.update == "simultaneous" else self._alternating_step
        self._step = tf.function(step, autograph=False, input_signature=[
            tf.TensorSpec([None, *spec.shape], tf.uint8), tf.TensorSpec([train.d_steps, train.batch_size], tf.int64),
            tf.TensorSpec([train.d_steps, train.batch_size, self.latent_dim], tf.float32)])
        self._generate_batch = tf.function(lambda z: to_uint8(self.generator(z, training=False)), autograph=False,
                                           input_signature=[tf.TensorSpec([None, self.latent_dim], tf.float32)])

    def _optimizer(self, lr: float, model):
        clip = {"clipvalue": self.train.clip_value} if self.train.clip_value else {}
        if self.train.optimizer == "rmsprop":
            optimizer = RMSprop(lr, rho=0.9, epsilon=1e-7, **clip)
        else:
            beta_1, beta_2 = self.train.betas
            optimizer = Adam(lr, beta_1=beta_1, beta_2=beta_2, epsilon=1e-8, **clip)
        optimizer.build(model.trainable_variables)  # its state exists before a checkpoint is loaded into it
        return optimizer

    def parameter_counts(self) -> dict[str, int]:
        count = lambda model: sum(int(np.prod(v.shape)) for v in model.trainable_variables)  # noqa: E731
        return {"generator": count(self.generator), "discriminator": count(self.discriminator)}

    def set_data(self, images: np.ndarray) -> None:
        with tf.device(self.device):
            self.images = tf.identity(tf.convert_to_tensor(images, tf.uint8))

    def train_step(self, batches: list[np.ndarray]) -> dict:
        noise = training_noise(self.seed, self.steps_taken, self.train.d_steps, self.train.batch_size, self.latent_dim)
        self.steps_taken += 1
        with tf.device(self.device):
            return self._step(self.images, np.stack(batches).astype(np.int64), noise)

    @staticmethod
    def _real(images, indices):
        return tf.cast(tf.gather(images, indices), tf.float32) / 127.5 - 1.0

    def _targets(self, count, real: bool):
        """D's targets: 1 - label_smoothing for real, 0 for fake, each moved toward the
        middle by up to label_noise."""
        targets = tf.fill([count, 1], 1.0 - self.train.label_smoothing if real else 0.0)
        if self.train.label_noise:
            jitter = self.noise.uniform([count, 1]) * self.train.label_noise
            targets = targets - jitter if real else targets + jitter
        return targets

    def _g_loss(self, fake_logits):
        if self.train.loss == "minimax":
            return -_bce(fake_logits, tf.zeros_like(fake_logits))
        return _bce(fake_logits, tf.ones_like(fake_logits))

    def _d_loss(self, real_logits, fake_logits):
        return (_bce(real_logits, self._targets(tf.shape(real_logits)[0], True))
                + _bce(fake_logits, self._targets(tf.shape(fake_logits)[0], False)))

    @staticmethod
    def _apply(optimizer, loss, tape, model):
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    def _alternating_step(self, images, batches, noise):
        """``d_steps`` discriminator updates, each on its own real batch; then one generator
        update through the updated discriminator on the last fake batch."""
        for index in range(self.train.d_steps):
            real = self._real(images, batches[index])
            g_tape = tf.GradientTape()
            with g_tape:
                fake = self.generator(noise[index], training=True)
            with tf.GradientTape() as d_tape:
                real_logits = self.discriminator(real, training=True)
                fake_logits = self.discriminator(tf.stop_gradient(fake), training=True)
                d_loss = self._d_loss(real_logits, fake_logits)
            self._apply(self.opt_d, d_loss, d_tape, self.discriminator)
        with g_tape:
            g_loss = self._g_loss(self.discriminator(fake, training=True))
        self._apply(self.opt_g, g_loss, g_tape, self.generator)
        self.step.assign_add(1)
        return self._metrics(d_loss, g_loss, real_logits, fake_logits)

    def _simultaneous_step(self, images, batches, noise):
        """Both losses from one forward pass, each network's gradients from its own loss
        (the TensorFlow tutorial's two-tape step)."""
        real = self._real(images, batches[0])
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(noise[0], training=True)
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_loss, g_loss = self._d_loss(real_logits, fake_logits), self._g_loss(fake_logits)
        g_variables, d_variables = self.generator.trainable_variables, self.discriminator.trainable_variables
        g_gradients, d_gradients = g_tape.gradient(g_loss, g_variables), d_tape.gradient(d_loss, d_variables)
        self.opt_d.apply_gradients(zip(d_gradients, d_variables))
        self.opt_g.apply_gradients(zip(g_gradients, g_variables))
        self.step.assign_add(1)
        return self._metrics(d_loss, g_loss, real_logits, fake_logits)

    @staticmethod
    def _metrics(d_loss, g_loss, real_logits, fake_logits) -> dict:
        return {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
            "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),
        }

    def _generate(self, noise) -> np.ndarray:
        with tf.device(self.device):
            count = int(noise.shape[0])
            return np.concatenate([self._generate_batch(noise[i:i + 512]).numpy() for i in range(0, count, 512)])

    def fixed_samples(self) -> np.ndarray:
        return self._generate(self.fixed_noise)

    def generate(self, count: int, seed: int) -> np.ndarray:
        return self._generate(sample_noise(seed, count, self.latent_dim))

    def save(self, directory: Path) -> None:
        with tf.device(self.device):
            self.checkpoint.write(str(directory / CHECKPOINT))

    def load(self, directory: Path, *, generator_only: bool = False) -> None:
        """Restore a checkpoint (tensors only: nothing in the files is executed). With
        ``generator_only``, only the generator's weights and statistics. A failed load
        may leave the networks partly restored: build a new trainer before retrying."""
        prefix, index = str(directory / CHECKPOINT), directory / f"{CHECKPOINT}.index"
        try:
            if not index.is_file():
                raise FileNotFoundError("no such file")
            tf.train.load_checkpoint(prefix)
        except Exception as error:
            raise CheckpointError(index, error) from None
        target = tf.train.Checkpoint(generator=self.generator) if generator_only else self.checkpoint
        try:
            status = target.read(prefix)
            if generator_only:
                status.expect_partial()
            status.assert_existing_objects_matched()
            self.steps_taken = int(self.step.numpy())
        except Exception as error:
            data = sorted(directory.glob(f"{CHECKPOINT}.data-*"))
            raise CheckpointError(data[0] if data else index, error) from None
