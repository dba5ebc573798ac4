"""Training one step at a time on TensorFlow: each step is one ``tf.function``.

The latent noise, and a conditional run's fake classes, are a function of the seed and the
step (``gankit.noise``); the other random state lives in variables so that a checkpoint
holds all of it: the noise added to the targets comes from a ``tf.random.Generator``, and
each Dropout layer draws stateless masks from a Keras seed generator whose state is
checkpointed with the models. A run resumed from a checkpoint therefore continues exactly as if it had never stopped.

On CPU the trainer turns on ``tf.config.experimental.enable_op_determinism()`` (for the
whole process, as TensorFlow only allows), so the same recipe and seed give the same
losses; on GPU it is left off for speed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from gankit.backend import (BackendError, CheckpointError, check_native_shapes, check_same_shapes, generate_images,
                            native_networks, parameter_counts)
from gankit.data import even_labels, fixed_labels
from gankit.noise import fixed_noise, sample_noise, training_labels, training_noise
from gankit.nn import frozen_layers
from gankit.updates import Plan, Updates
from gankit_plugins.tensorflow_backend import import_tensorflow
from gankit_plugins.tensorflow_backend.compile import compile_network, dropout_seed_states, spectral_layers
from gankit_plugins.tensorflow_backend.export import GeneratorExport
from gankit_plugins.tensorflow_backend.ops import TensorOps
from gankit_plugins.tensorflow_backend.optimizers import Adam, RMSprop

tf = import_tensorflow()
keras = tf.keras
CHECKPOINT = "checkpoint"
"""The prefix of the checkpoint files in a checkpoint directory (``.index``, ``.data-*``)."""


def resolve_device(params) -> str:
    """The TensorFlow device the recipe's ``device`` picks. GPUs get memory as needed, as on
    torch, rather than all of it up front."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: keep its setting
            pass
    device = params.choose_device({"gpu": len(gpus)})
    return f"/{device.kind.upper()}:{device.index}"


def set_threads(threads: int) -> None:
    if not threads or tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        raise BackendError("backend.threads cannot change once TensorFlow has started in this process; "
                           "run this recipe on its own") from None


def _native_networks(architecture, seed: int):
    """The architecture's native Keras networks, built after seeding Keras, or None."""
    if "tensorflow" in architecture.native:
        keras.utils.set_random_seed(seed)
    return native_networks(architecture, "tensorflow")


def _built(model, latent_dim: int):
    """``model`` with its weights made (a subclassed Keras model has none until called)."""
    model(tf.zeros([1, latent_dim]), training=False)
    return model


class _Tape:
    """A ``tf.GradientTape`` (re-enterable) whose gradients are taken by network name."""

    def __init__(self, weights: dict):
        self.weights, self.tape = weights, tf.GradientTape()

    def __enter__(self):
        self.tape.__enter__()
        return self

    def __exit__(self, *exc):
        return self.tape.__exit__(*exc)

    def gradient(self, loss, network: str):
        return self.tape.gradient(loss, self.weights[network])


class TensorflowTrainer(TensorOps, GeneratorExport):
    """A trainer that is also the primitives (``gankit.backend.Primitives``) its steps use."""

    def __init__(self, params, architecture, spec, train, seed: int):
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise BackendError("one run on several processes (torchrun) needs the torch backend; "
                               "set backend.use = \"torch\" or run one process")
        set_threads(params.threads)
        self.device = resolve_device(params)
        if self.device.startswith("/CPU"):
            tf.config.experimental.enable_op_determinism()
        self.train, self.latent_dim, self.seed = train, architecture.latent_dim, seed
        self.jit_compile = params.jit_compile
        self.classes = architecture.classes
        self.updates = Updates(train, seed, spec.shape)
        with tf.device(self.device):
            native = _native_networks(architecture, seed)
            self.description = None if native else architecture
            self.generator, self.discriminator = native or (
                compile_network(architecture.generator, seed, "generator"),
                compile_network(architecture.discriminator, seed + 1, "discriminator",
                                frozen=frozen_layers(architecture.discriminator, train.freeze_d)))
            if native:
                self._check_native_shapes(spec)
            self.average = None
            if train.ema is not None:
                self.average = (_built(_native_networks(architecture, seed)[0], self.latent_dim) if native
                                else compile_network(architecture.generator, seed, "generator_ema"))
                for average, live in zip(self.average.variables, self.generator.variables):
                    average.assign(live)
            self.networks = {"generator": self.generator, "discriminator": self.discriminator}
            self.optimizers = {"generator": self._optimizer(train.lr_g, self.generator),
                               "discriminator": self._optimizer(train.lr_d, self.discriminator)}
            self.noise = tf.random.Generator.from_seed(seed + 1)  # label noise and interpolation
            self.fixed_labels = fixed_labels(self.classes, train.samples).astype(np.int32) if self.classes else None
            samples = train.samples if self.fixed_labels is None else len(self.fixed_labels)
            self.fixed_noise = tf.Variable(fixed_noise(seed, samples, self.latent_dim), trainable=False,
                                           name="fixed_noise")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.weights = {name: net.trainable_variables for name, net in self.networks.items()}
        averaged = {"generator_ema": self.average} if self.average is not None else {}
        self.checkpoint = tf.train.Checkpoint(
            generator=self.generator, discriminator=self.discriminator,
            opt_g=self.optimizers["generator"], opt_d=self.optimizers["discriminator"],
            step=self.step, noise=self.noise, fixed_noise=self.fixed_noise,
            g_dropout=dropout_seed_states(self.generator), d_dropout=dropout_seed_states(self.discriminator),
            **averaged,
        )
        self.images = None
        self.labels = tf.zeros([0], tf.int32)
        self.latents: list = []
        self.fake_classes: list = []
        self.spec = spec
        self._steps: dict = {}
        self._augment_signature = {name: tf.TensorSpec(shape, dtype) for name, (shape, dtype) in
                                   (self.updates.augmentation.shapes().items() if self.updates.augmentation else ())}
        signature = [tf.TensorSpec([None, self.latent_dim], tf.float32), tf.TensorSpec([None], tf.int32)]
        self._samplers = {raw: tf.function(lambda z, y, model=model: self._call(model, z, y, False), autograph=False,
                                           input_signature=signature)
                          for raw, model in ((True, self.generator),
                                             (False, self.average if self.average is not None else self.generator))}

    def _call(self, model, x, labels, training: bool):
        """A network on ``x`` (and the labels, if it is conditional)."""
        return model([x, labels] if self.classes else x, training=training)

    def _optimizer(self, lr: float, model):
        clip = {"clipvalue": self.train.clip_value} if self.train.clip_value else {}
        if self.train.optimizer == "rmsprop":
            optimizer = RMSprop(lr, rho=0.9, epsilon=1e-7, **clip)
        else:
            beta_1, beta_2 = self.train.betas
            optimizer = Adam(lr, beta_1=beta_1, beta_2=beta_2, epsilon=1e-8, **clip)
        optimizer.build(model.trainable_variables)  # its state exists before a checkpoint is loaded into it
        return optimizer

    def _check_native_shapes(self, spec) -> None:
        """Native networks are checked (and built) on two noise vectors, in sampling mode."""
        try:
            images = self.generator(tf.zeros([2, self.latent_dim]), training=False)
            logits = self.discriminator(images, training=False)
        except (ValueError, TypeError, tf.errors.OpError) as error:
            raise BackendError(f"the native networks fail on a batch of two: {str(error).splitlines()[0]}") from None
        check_native_shapes(tuple(images.shape), tuple(logits.shape), spec)

    def parameter_counts(self) -> dict[str, int]:
        return parameter_counts(self.description, lambda name: sum(
            int(np.prod(v.shape)) for v in self.networks[name].trainable_variables))

    def set_data(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        if self.classes and labels is None:
            raise BackendError("a conditional generator needs the images' labels")
        with tf.device(self.device):
            self.images = tf.identity(tf.convert_to_tensor(images, tf.uint8))
            if self.classes:
                self.labels = tf.identity(tf.convert_to_tensor(np.asarray(labels), tf.int32))

    def train_step(self, batches: list[np.ndarray], step: int, augment_p: float | None = None) -> dict:
        plan = self.updates.plan(step)
        noise = training_noise(self.seed, step, self.train.d_steps, self.train.batch_size, self.latent_dim)
        with tf.device(self.device):
            rates = np.asarray(plan.learning_rates or (0.0, 0.0), np.float32)
            return self._compiled(plan.due, plan.learning_rates is not None)(
                self.images, self.labels, np.stack(batches).astype(np.int64), noise, self._fake_classes(step),
                np.float32(plan.ema_decay or 0.0), rates, self.updates.augment_inputs(step, augment_p))

    def _fake_classes(self, step: int) -> np.ndarray:
        """The classes of step ``step``'s fake batches (``gankit.noise``); zeros, unread, when
        the run is unconditional."""
        shape = (self.train.d_steps, self.train.batch_size)
        if not self.classes:
            return np.zeros(shape, np.int32)
        return training_labels(self.seed, step, *shape, self.classes).astype(np.int32)

    def _compiled(self, due: tuple[bool, ...], sets_rates: bool):
        """The step as one ``tf.function``, traced once per set of due penalties (the schedule
        always hands over ``d_steps`` full batches; the EMA decay and the learning rates, when
        the plan sets them, are arguments)."""
        if (due, sets_rates) not in self._steps:
            plan = Plan(due, 0.0 if self.average is not None else None)

            def step(images, labels, batches, noise, fake_classes, ema_decay, rates, augment):
                reals = [tf.cast(tf.gather(images, batches[i]), tf.float32) / 127.5 - 1.0
                         for i in range(self.train.d_steps)]
                real_labels = [tf.gather(labels, batches[i]) for i in range(self.train.d_steps)] if self.classes else None
                self.latents = [noise[i] for i in range(self.train.d_steps)]
                self.fake_classes = [fake_classes[i] for i in range(self.train.d_steps)]
                planned = replace(plan, learning_rates=(rates[0], rates[1])) if sets_rates else plan
                values = self.updates.step(self, reals, planned, ema_decay, labels=real_labels, augment=augment)
                self.step.assign_add(1)
                return values

            self._steps[due, sets_rates] = tf.function(step, autograph=False, jit_compile=self.jit_compile, input_signature=[
                tf.TensorSpec([None, *self.spec.shape], tf.uint8), tf.TensorSpec([None], tf.int32),
                tf.TensorSpec([self.train.d_steps, self.train.batch_size], tf.int64),
                tf.TensorSpec([self.train.d_steps, self.train.batch_size, self.latent_dim], tf.float32),
                tf.TensorSpec([self.train.d_steps, self.train.batch_size], tf.int32),
                tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.float32), self._augment_signature])
        return self._steps[due, sets_rates]

    # The stateful primitives (the stateless ones come from TensorOps).

    def latent(self, like):
        """The next of this step's noise batches (``gankit.noise``: the same numbers on every backend)."""
        return self.latents.pop(0)

    def fake_labels(self, like):
        """The next of this step's fake-label batches (``gankit.noise``, like the latents)."""
        return self.fake_classes.pop(0)

    def forward_generator(self, z, labels=None):
        return self._call(self.generator, z, labels, True)

    def forward_discriminator(self, images, labels=None):
        return self._call(self.discriminator, images, labels, True)

    def tape(self) -> _Tape:
        return _Tape(self.weights)

    def apply(self, network: str, gradients) -> None:
        self.optimizers[network].apply_gradients(zip(gradients, self.weights[network]))

    def set_learning_rate(self, network: str, rate) -> None:
        """Assigns the optimizer's learning-rate variable, so a compiled step reads the new
        rate (a Python float would be frozen into the trace)."""
        self.optimizers[network].learning_rate.assign(rate)

    def input_gradient(self, function, inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = function(inputs)
        return outputs, tape.gradient(outputs, inputs)

    def batch_uniform(self, like):
        return self.noise.uniform([tf.shape(like)[0]] + [1] * (len(like.shape) - 1))

    def assign(self, variable, value) -> None:
        variable.assign(value)

    def ema_weights(self):
        return list(zip(self.average.trainable_variables, self.generator.trainable_variables))

    def ema_state(self):
        return list(zip(self.average.non_trainable_variables, self.generator.non_trainable_variables))

    def advance_spectral_norm(self, network: str) -> None:
        for layer in spectral_layers(self.networks[network]):
            layer.advance()

    # The projection primitives (``gankit.projection``).

    def forward_sampler(self, z, labels=None, *, raw: bool = False):
        model = self.generator if raw or self.average is None else self.average
        if labels is not None and labels.dtype.is_integer:
            labels = tf.cast(labels, tf.int32)
        return self._call(model, z, labels, False)

    def tensor(self, array: np.ndarray):
        with tf.device(self.device):
            return tf.identity(tf.convert_to_tensor(np.ascontiguousarray(array)))

    def to_numpy(self, x) -> np.ndarray:
        return x.numpy()

    def image_batch(self, images: np.ndarray):
        return tf.cast(self.tensor(images), tf.float32) / 127.5 - 1.0

    # Sampling and checkpoints.

    def _generate(self, noise: np.ndarray, labels: np.ndarray | None, raw: bool = False) -> np.ndarray:
        sample = self._mixing_sampler(raw) if labels is not None and labels.ndim == 2 else self._samplers[raw]
        if labels is None:  # the unconditional sampler's label input, unread
            labels = np.zeros(len(noise), np.int32)
        with tf.device(self.device):
            return generate_images(lambda z, y: sample(z, y).numpy(), noise, labels)

    def _mixing_sampler(self, raw: bool):
        """The generator compiled to take class weights (N, classes), holding the same weights."""
        if ("mixed", raw) not in self._samplers:
            model = self.generator if raw or self.average is None else self.average
            with tf.device(self.device):
                mixed = compile_network(self.description.generator, self.seed, "generator_mixed", mixed=True)
                mixed.set_weights(model.get_weights())
            self._samplers["mixed", raw] = tf.function(lambda z, y: mixed([z, y], training=False), autograph=False)
        return self._samplers["mixed", raw]

    @property
    def mixes_classes(self) -> bool:
        """Whether the generator takes class weights (N, classes) for labels: a gankit.nn one does."""
        return bool(self.classes) and self.description is not None

    def fixed_samples(self) -> np.ndarray:
        return self._generate(self.fixed_noise.numpy(), self.fixed_labels)

    def generate(self, count: int, seed: int, *, raw: bool = False, labels: np.ndarray | None = None) -> np.ndarray:
        return self.generate_from_noise(sample_noise(seed, count, self.latent_dim), raw=raw, labels=labels)

    def generate_from_noise(self, noise: np.ndarray, *, raw: bool = False,
                            labels: np.ndarray | None = None) -> np.ndarray:
        if self.classes:  # class weights (N, classes) mix the classes
            labels = np.asarray(even_labels(self.classes, len(noise)) if labels is None else labels)
            labels = labels.astype(np.float32 if labels.ndim == 2 else np.int32)
        return self._generate(np.ascontiguousarray(noise, np.float32), labels if self.classes else None, raw)

    def save(self, directory: Path) -> None:
        with tf.device(self.device):
            self.checkpoint.write(str(directory / CHECKPOINT))

    def load(self, directory: Path, *, generator_only: bool = False) -> None:
        """Restore a checkpoint (tensors only: nothing in the files is executed). With
        ``generator_only``, only the generator's weights and statistics. A failed load
        may leave the networks partly restored: build a new trainer before retrying."""
        prefix = _readable(directory)
        averaged = {"generator_ema": self.average} if self.average is not None else {}
        target = tf.train.Checkpoint(generator=self.generator, **averaged) if generator_only else self.checkpoint
        try:
            status = target.read(prefix)
            if generator_only:
                status.expect_partial()
            status.assert_existing_objects_matched()
        except Exception as error:
            data = sorted(directory.glob(f"{CHECKPOINT}.data-*"))
            raise CheckpointError(data[0] if data else directory / f"{CHECKPOINT}.index", error) from None

    def load_weights(self, directory: Path) -> None:
        """The networks of a checkpoint, every tensor's shape checked before any is loaded."""
        prefix = _readable(directory)
        there = _network_tensors(prefix)
        networks = {"generator": self.generator, "discriminator": self.discriminator}
        if self.average is not None and "generator_ema" in there:
            networks["generator_ema"] = self.average
        with tempfile.TemporaryDirectory() as scratch, tf.device(self.device):
            here = _network_tensors(tf.train.Checkpoint(**networks).write(os.path.join(scratch, "own")))
        for name in networks:
            check_same_shapes("EMA generator" if name == "generator_ema" else name, there.get(name, {}), here[name])
        try:
            status = tf.train.Checkpoint(**networks).read(prefix)
            status.expect_partial()
            status.assert_existing_objects_matched()
        except Exception as error:
            data = sorted(directory.glob(f"{CHECKPOINT}.data-*"))
            raise CheckpointError(data[0] if data else directory / f"{CHECKPOINT}.index", error) from None
        if self.average is not None and "generator_ema" not in networks:
            for average, live in zip(self.average.variables, self.generator.variables):
                average.assign(live)


def _readable(directory: Path) -> str:
    """The prefix of the TensorFlow checkpoint in ``directory``; a CheckpointError if it cannot be read."""
    prefix, index = str(directory / CHECKPOINT), directory / f"{CHECKPOINT}.index"
    try:
        if not index.is_file():
            raise FileNotFoundError("no such file")
        tf.train.load_checkpoint(prefix)
    except Exception as error:
        raise CheckpointError(index, error) from None
    return prefix


def _network_tensors(prefix: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """The shape of every tensor of each network (``generator``, ``discriminator``,
    ``generator_ema``) in a checkpoint, named by its path from the network in the
    checkpoint's object graph (the first path that reaches it, children in order): the
    same names for the same networks, whatever else the checkpoint holds."""
    from tensorflow.core.protobuf.trackable_object_graph_pb2 import TrackableObjectGraph

    reader = tf.train.load_checkpoint(prefix)
    graph = TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    shapes = reader.get_variable_to_shape_map()
    found: dict[str, dict[str, tuple[int, ...]]] = {}

    def visit(node_id: int, path: tuple[str, ...], tensors: dict, seen: set) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        node = graph.nodes[node_id]
        for attribute in node.attributes:
            if attribute.checkpoint_key in shapes:
                named = path if attribute.name == "VARIABLE_VALUE" else path + (attribute.name,)
                tensors["/".join(named)] = tuple(shapes[attribute.checkpoint_key])
        for child in node.children:
            visit(child.node_id, path + (child.local_name,), tensors, seen)

    for child in graph.nodes[0].children:
        if child.local_name in ("generator", "discriminator", "generator_ema"):
            visit(child.node_id, (), found.setdefault(child.local_name, {}), set())
    return found
