"""Training on PyTorch: the primitives ``gankit.updates`` computes a step with, the networks,
optimizers and random state, and checkpoints in safetensors + a weights-only state file."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from gankit.backend import (BackendError, CheckpointError, check_native_shapes, check_same_shapes, generate_images,
                            native_networks, parameter_counts)
from gankit.data import even_labels, fixed_labels
from gankit.noise import fixed_noise, sample_noise, training_labels, training_noise
from gankit.nn import frozen_layers
from gankit.updates import Updates
from gankit_plugins.torch_backend.compile import compile_network, spectral_norms
from gankit_plugins.torch_backend.distributed import local_device, shards
from gankit_plugins.torch_backend.export import GeneratorExport
from gankit_plugins.torch_backend.ops import TensorOps
from gankit_plugins.torch_backend.threads import choose_threads

TORCH_THREADS = torch.get_num_threads()
"""torch's own default, before any trainer set it."""
FUSED_ADAM_DEVICES = ("cpu", "cuda")
"""Where torch has a fused Adam kernel."""
SCALED_ONCE_BYTES = 2**30
"""Training images up to this size as floats are scaled to [-1, 1] once, not every batch."""


def resolve_device(params) -> torch.device:
    mps = getattr(torch.backends, "mps", None)
    visible = {"cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
               "mps": int(bool(mps and mps.is_available()))}
    return local_device(torch.device(str(params.choose_device(visible))))


class _Scope:
    """torch records every operation anyway: a tape is only a scope, and its gradient autograd's.
    The graph is kept (``retain``) where the simultaneous update takes two gradients from one
    forward pass; otherwise it is freed as soon as the gradient is taken."""

    def __init__(self, weights: dict[str, list[torch.Tensor]], retain: bool):
        self.weights, self.retain = weights, retain

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def gradient(self, loss: torch.Tensor, network: str):
        return torch.autograd.grad(loss, self.weights[network], retain_graph=self.retain)


class TorchTrainer(TensorOps, GeneratorExport):
    """A trainer that is also the primitives (``gankit.backend.Primitives``) its steps use."""

    def __init__(self, params, architecture, spec, train, seed: int):
        # "auto" is decided by the first training step, or taken from the checkpoint a resume
        # loads: drawing samples or scores never waits for the measurement.
        self.auto_threads = self.threads_pending = params.threads == "auto"
        if not self.auto_threads:  # 0 restores torch's default, which an earlier trainer in this process may have changed
            torch.set_num_threads(params.threads or TORCH_THREADS)
        self.device = resolve_device(params)
        self.shards = shards(train.batch_size)  # None unless torchrun started several processes
        self.train, self.latent_dim, self.seed = train, architecture.latent_dim, seed
        self.classes = architecture.classes
        self.updates = Updates(train, seed, spec.shape)
        torch.manual_seed(seed)
        # channels-last convolutions are about 25% faster on CPU (oneDNN) and suit tensor cores.
        self.layout = torch.channels_last
        native = native_networks(architecture, "torch")
        self.description = None if native else architecture
        synced = {"sync_batchnorm": params.sync_batchnorm}
        frozen = frozen_layers(architecture.discriminator, train.freeze_d)
        generator, discriminator = native or (compile_network(architecture.generator, **synced),
                                              compile_network(architecture.discriminator, **synced, frozen=frozen))
        self.generator = generator.to(self.device, memory_format=self.layout)
        self.discriminator = discriminator.to(self.device, memory_format=self.layout)
        self.networks = {"generator": self.generator, "discriminator": self.discriminator}
        self.spectral = {name: spectral_norms(net) for name, net in self.networks.items()}
        if native:
            self._check_native_shapes(spec)
        build_generator = ((lambda: native_networks(architecture, "torch")[0]) if native
                           else (lambda: compile_network(architecture.generator)))
        self.average = self._averaged_copy(build_generator) if train.ema is not None else None
        if params.compile:  # the simultaneous update takes two gradients from one graph, which donated buffers forbid
            from torch._functorch import config as functorch_config  # `import torch` alone does not load it

            functorch_config.donated_buffer = False
        self.forwards = {name: torch.compile(net) if params.compile else net for name, net in self.networks.items()}
        self.precision = params.precision
        self.weights = {name: [p for p in net.parameters() if p.requires_grad] for name, net in self.networks.items()}
        self.optimizers = {"generator": self._optimizer(self.weights["generator"], train.lr_g),
                           "discriminator": self._optimizer(self.weights["discriminator"], train.lr_d)}
        self.noise = torch.Generator(self.device).manual_seed(seed + 1)  # label noise and interpolation
        self.fixed_labels = fixed_labels(self.classes, train.samples) if self.classes else None
        samples = train.samples if self.fixed_labels is None else len(self.fixed_labels)
        self.fixed_noise = torch.from_numpy(fixed_noise(seed, samples, self.latent_dim)).to(self.device)
        self.latents: list[torch.Tensor] = []
        self.fake_classes: list[torch.Tensor] = []
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def _averaged_copy(self, build_generator) -> torch.nn.Module:
        """The EMA generator: the same network, starting from the generator's weights. Built
        under a forked RNG, so turning EMA on changes no other random number."""
        with torch.random.fork_rng(devices=[]):
            average = build_generator().to(self.device, memory_format=self.layout)
        average.load_state_dict(self.generator.state_dict())
        return average.requires_grad_(False).eval()

    def _optimizer(self, weights, lr):
        if self.train.optimizer == "rmsprop":
            return torch.optim.RMSprop(weights, lr=lr, alpha=0.9, eps=1e-7)
        # The fused kernel updates a tensor in one pass: on CPU it takes the per-step time of
        # Adam from about 290 to 110 microseconds a network (benchmarks/torch_step.py).
        fused = self.device.type in FUSED_ADAM_DEVICES
        return torch.optim.Adam(weights, lr=lr, betas=tuple(self.train.betas), eps=1e-8, fused=fused or None)

    @torch.no_grad()
    def _check_native_shapes(self, spec) -> None:
        """Native networks are checked on two noise vectors, in sampling mode (nothing changes)."""
        try:
            images = self.generator.eval()(torch.zeros(2, self.latent_dim, device=self.device))
            logits = self.discriminator.eval()(images)
        except RuntimeError as error:
            raise BackendError(f"the native networks fail on a batch of two: {str(error).splitlines()[0]}") from None
        finally:
            self.generator.train()
            self.discriminator.train()
        check_native_shapes(tuple(images.permute(0, 2, 3, 1).shape), tuple(logits.shape), spec)

    def parameter_counts(self) -> dict[str, int]:
        return parameter_counts(self.description, lambda name: sum(
            p.numel() for p in self.networks[name].parameters() if p.requires_grad))

    def set_data(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        self.images = torch.from_numpy(images).to(self.device)
        if self.images.numel() * 4 <= SCALED_ONCE_BYTES:  # NHWC floats: a batch's permute is channels-last already
            self.images = _scaled(self.images)
        if self.classes:
            if labels is None:
                raise BackendError("a conditional generator needs the images' labels")
            self.labels = torch.from_numpy(np.asarray(labels, np.int64)).to(self.device)

    def _real(self, indices: np.ndarray) -> torch.Tensor:
        batch = self.images[torch.from_numpy(indices).to(self.device)]
        if batch.dtype == torch.uint8:
            batch = _scaled(batch)
        return batch.permute(0, 3, 1, 2).contiguous(memory_format=self.layout)

    def train_step(self, batches: list[np.ndarray], step: int, augment_p: float | None = None) -> dict[str, torch.Tensor]:
        if self.threads_pending:
            torch.set_num_threads(choose_threads(TORCH_THREADS))
            self.threads_pending = False
        noise = training_noise(self.seed, step, self.train.d_steps, self.train.batch_size, self.latent_dim)
        drawn = (training_labels(self.seed, step, self.train.d_steps, self.train.batch_size, self.classes)
                 if self.classes else None)
        augment = self.updates.augment_inputs(step, augment_p)
        if self.shards is not None:
            batches, noise, drawn, augment = self.shards.take(batches, noise, drawn, augment)
        augment = {name: torch.from_numpy(array).to(self.device) for name, array in augment.items()}
        self.latents = list(torch.from_numpy(np.ascontiguousarray(noise)).to(self.device).unbind(0))
        labels = None
        if self.classes:
            labels = [self.labels[torch.from_numpy(indices).to(self.device)] for indices in batches]
            self.fake_classes = list(torch.from_numpy(np.ascontiguousarray(drawn)).to(self.device).unbind(0))
        values = self.updates.step(self, [self._real(indices) for indices in batches], self.updates.plan(step),
                                   labels=labels, augment=augment)
        if self.shards is not None:
            values = dict(zip(values, self.shards.average(values.values())))
        return values

    # The stateful primitives (the stateless ones come from TensorOps).

    def latent(self, like: torch.Tensor) -> torch.Tensor:
        """The next of this step's noise batches (``gankit.noise``: the same numbers on every backend)."""
        return self.latents.pop(0)[:len(like)]

    def _autocast(self):
        """bfloat16 autocast for ``backend.precision = "bf16"``, else nothing (a disabled
        autocast still costs a few microseconds a call)."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def fake_labels(self, like: torch.Tensor) -> torch.Tensor:
        """The next of this step's fake-label batches (``gankit.noise``, like the latents)."""
        return self.fake_classes.pop(0)[:len(like)]

    def forward_generator(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with self._autocast():
            return self.forwards["generator"](z, *self._conditioned(labels))

    def forward_discriminator(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with self._autocast():
            return self.forwards["discriminator"](images, *self._conditioned(labels)).float()

    def _conditioned(self, labels: torch.Tensor | None) -> tuple:
        """The networks' further argument: a conditional one's labels; none for a native one."""
        return () if labels is None else (labels,)

    def tape(self) -> _Scope:
        return _Scope(self.weights, retain=self.updates.reuses_graph)

    def apply(self, network: str, gradients) -> None:
        weights = self.weights[network]
        if self.shards is not None:
            gradients = self.shards.average(gradients)
        for weight, gradient in zip(weights, gradients):
            weight.grad = gradient
        if self.train.clip_value:
            torch.nn.utils.clip_grad_value_(weights, self.train.clip_value)
        self.optimizers[network].step()

    def set_learning_rate(self, network: str, rate: float) -> None:
        for group in self.optimizers[network].param_groups:
            group["lr"] = rate

    def input_gradient(self, function, inputs: torch.Tensor):
        inputs = inputs.detach().requires_grad_(True)
        outputs = function(inputs)
        (gradient,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
        return outputs, gradient

    def batch_uniform(self, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(len(like), *[1] * (like.dim() - 1), generator=self.noise, device=self.device)

    @torch.no_grad()
    def assign(self, variable: torch.Tensor, value: torch.Tensor) -> None:
        variable.copy_(value)

    def ema_weights(self):
        return [(average, live.detach()) for average, live in zip(self.average.parameters(), self.generator.parameters())]

    def ema_state(self):
        return list(zip(self.average.buffers(), self.generator.buffers()))

    @torch.no_grad()
    def advance_spectral_norm(self, network: str) -> None:
        for original, parametrization in self.spectral[network]:
            parametrization.advance(original)

    # The projection primitives (``gankit.projection``).

    def forward_sampler(self, z: torch.Tensor, labels: torch.Tensor | None = None, *, raw: bool = False) -> torch.Tensor:
        generator = self.generator if raw or self.average is None else self.average
        was_training = generator.training
        generator.eval()
        try:
            return generator(z, *self._conditioned(labels)).float()
        finally:
            generator.train(was_training)

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy()

    def image_batch(self, images: np.ndarray) -> torch.Tensor:
        return _scaled(self.tensor(images)).permute(0, 3, 1, 2)

    # Sampling and checkpoints.

    @torch.no_grad()
    def _generate(self, noise: np.ndarray, labels: np.ndarray | None, raw: bool = False) -> np.ndarray:
        generator = self.generator if raw or self.average is None else self.average
        was_training = generator.training
        generator.eval()
        tensor = lambda array: torch.from_numpy(array).to(self.device)  # noqa: E731
        try:
            return generate_images(lambda z, *y: generator(tensor(z), *map(tensor, y)).float()
                                   .permute(0, 2, 3, 1).cpu().numpy(), noise, labels)
        finally:
            generator.train(was_training)

    def fixed_samples(self) -> np.ndarray:
        return self._generate(self.fixed_noise.cpu().numpy(), self.fixed_labels)

    def generate(self, count: int, seed: int, *, raw: bool = False, labels: np.ndarray | None = None) -> np.ndarray:
        return self.generate_from_noise(sample_noise(seed, count, self.latent_dim), raw=raw, labels=labels)

    def generate_from_noise(self, noise: np.ndarray, *, raw: bool = False,
                            labels: np.ndarray | None = None) -> np.ndarray:
        if self.classes:  # class weights (N, classes) mix the classes
            labels = np.asarray(even_labels(self.classes, len(noise)) if labels is None else labels)
            labels = labels.astype(np.float32 if labels.ndim == 2 else np.int64)
        return self._generate(np.ascontiguousarray(noise, np.float32), labels if self.classes else None, raw)

    @property
    def mixes_classes(self) -> bool:
        """Whether the generator takes class weights (N, classes) for labels: a gankit.nn one does."""
        return bool(self.classes) and self.description is not None

    def save(self, directory: Path) -> None:
        cpu = lambda module: {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}  # noqa: E731
        save_file(cpu(self.generator), str(directory / "generator.safetensors"))
        save_file(cpu(self.discriminator), str(directory / "discriminator.safetensors"))
        if self.average is not None:
            save_file(cpu(self.average), str(directory / "generator_ema.safetensors"))
        state = {
            "opt_g": self.optimizers["generator"].state_dict(),
            "opt_d": self.optimizers["discriminator"].state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "rng_noise": self.noise.get_state(),
            "fixed_noise": self.fixed_noise.cpu(),
            "threads": torch.get_num_threads(),
        }
        torch.save(state, directory / "state.pt")

    def load(self, directory: Path, *, generator_only: bool = False) -> None:
        """Restore a checkpoint: tensors from safetensors, the rest with weights_only=True,
        so nothing in the files is ever executed."""
        _load_weights(self.generator, directory / "generator.safetensors", self.device)
        if self.average is not None:
            _load_weights(self.average, directory / "generator_ema.safetensors", self.device)
        if generator_only:
            return
        _load_weights(self.discriminator, directory / "discriminator.safetensors", self.device)
        path = directory / "state.pt"
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.optimizers["generator"].load_state_dict(state["opt_g"])
            self.optimizers["discriminator"].load_state_dict(state["opt_d"])
        except Exception as error:
            raise CheckpointError(path, error) from None
        torch.set_rng_state(state["rng_cpu"].cpu())
        if state["rng_cuda"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
        self.noise.set_state(state["rng_noise"].cpu())
        self.fixed_noise = state["fixed_noise"].to(self.device)
        if self.auto_threads and "threads" in state:  # the count the run started with: the same float sums
            torch.set_num_threads(state["threads"])
            self.threads_pending = False

    def load_weights(self, directory: Path) -> None:
        """The networks of a checkpoint, every tensor's shape checked before any is loaded."""
        files = {"generator": directory / "generator.safetensors", "discriminator": directory / "discriminator.safetensors"}
        modules = dict(self.networks)
        if self.average is not None:
            averaged = directory / "generator_ema.safetensors"
            files["EMA generator"] = averaged if averaged.is_file() else files["generator"]
            modules["EMA generator"] = self.average
        tensors = {}
        for name, path in files.items():
            try:
                tensors[name] = load_file(str(path), device=str(self.device))
            except Exception as error:
                raise CheckpointError(path, error) from None
            check_same_shapes(name, {key: tuple(value.shape) for key, value in tensors[name].items()},
                              {key: tuple(value.shape) for key, value in modules[name].state_dict().items()})
        for name, module in modules.items():
            module.load_state_dict(tensors[name])


def _scaled(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images as floats in [-1, 1], as generators draw them."""
    return images.float().div_(127.5).sub_(1.0)


def _load_weights(module: torch.nn.Module, path: Path, device) -> None:
    try:
        module.load_state_dict(load_file(str(path), device=str(device)))
    except Exception as error:
        raise CheckpointError(path, error) from None
