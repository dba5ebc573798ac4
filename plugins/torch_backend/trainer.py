"""Training one step at a time on PyTorch; checkpoints in safetensors + a weights-only state file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gankit.backend import BackendError, CheckpointError
from gankit.noise import fixed_noise, sample_noise, training_noise
from gankit_plugins.torch_backend.compile import compile_network


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        index = int(name.split(":")[1]) if ":" in name else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise BackendError(f"device {name!r} is not available here; use device = \"auto\" or \"cpu\"")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BackendError("device 'mps' is not available here; use device = \"auto\" or \"cpu\"")
    return torch.device(name)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], NCHW -> uint8 NHWC."""
    scaled = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


class TorchTrainer:
    def __init__(self, params, architecture, spec, train, seed: int):
        if architecture.generator is None:
            raise BackendError("this architecture gives no gankit.nn description for the torch backend")
        if params.threads:
            torch.set_num_threads(params.threads)
        self.device = resolve_device(params.device)
        self.train, self.latent_dim, self.seed, self.step = train, architecture.latent_dim, seed, 0
        torch.manual_seed(seed)
        # channels-last convolutions are about 25% faster on CPU (oneDNN) and suit tensor cores.
        self.layout = torch.channels_last
        self.generator = compile_network(architecture.generator).to(self.device, memory_format=self.layout)
        self.discriminator = compile_network(architecture.discriminator).to(self.device, memory_format=self.layout)
        self.opt_g = self._optimizer(self.generator, train.lr_g)
        self.opt_d = self._optimizer(self.discriminator, train.lr_d)
        self.noise = torch.Generator(self.device).manual_seed(seed + 1)  # label noise
        self.fixed_noise = torch.from_numpy(fixed_noise(seed, train.samples, self.latent_dim)).to(self.device)
        self.images: torch.Tensor | None = None

    def _optimizer(self, model, lr):
        if self.train.optimizer == "rmsprop":
            return torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.9, eps=1e-7)
        return torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(self.train.betas), eps=1e-8)

    def parameter_counts(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
        return {"generator": count(self.generator), "discriminator": count(self.discriminator)}

    def set_data(self, images: np.ndarray) -> None:
        self.images = torch.from_numpy(images).to(self.device)

    def _real(self, indices: np.ndarray) -> torch.Tensor:
        batch = self.images[torch.from_numpy(indices).to(self.device)]
        return batch.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous(memory_format=self.layout)

    def _noise(self) -> torch.Tensor:
        """This step's latent noise, one batch per discriminator update (gankit.noise)."""
        noise = training_noise(self.seed, self.step, self.train.d_steps, self.train.batch_size, self.latent_dim)
        self.step += 1
        return torch.from_numpy(noise).to(self.device)

    def _targets(self, count: int, real: bool) -> torch.Tensor:
        """D's targets: 1 - label_smoothing for real, 0 for fake, each moved toward the
        middle by up to label_noise."""
        value = 1.0 - self.train.label_smoothing if real else 0.0
        targets = torch.full((count, 1), value, device=self.device)
        if self.train.label_noise:
            jitter = torch.rand(count, 1, generator=self.noise, device=self.device) * self.train.label_noise
            targets = targets - jitter if real else targets + jitter
        return targets

    def _g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.train.loss == "minimax":
            return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))

    def _d_loss(self, real_logits, fake_logits) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real_logits, self._targets(len(real_logits), True))
                + F.binary_cross_entropy_with_logits(fake_logits, self._targets(len(fake_logits), False)))

    def _step(self, optimizer, model) -> None:
        if self.train.clip_value:
            torch.nn.utils.clip_grad_value_(model.parameters(), self.train.clip_value)
        optimizer.step()

    def train_step(self, batches: list[np.ndarray]) -> dict[str, torch.Tensor]:
        noise = self._noise()
        if self.train.update == "simultaneous":
            return self._simultaneous_step(batches[0], noise[0])
        for indices, z in zip(batches, noise):
            real = self._real(indices)
            fake = self.generator(z[:len(real)])
            real_logits, fake_logits = self.discriminator(real), self.discriminator(fake.detach())
            d_loss = self._d_loss(real_logits, fake_logits)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self._step(self.opt_d, self.discriminator)
        g_loss = self._g_loss(self.discriminator(fake))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self._step(self.opt_g, self.generator)
        return self._metrics(d_loss, g_loss, real_logits, fake_logits)

    def _simultaneous_step(self, indices: np.ndarray, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both losses from one forward pass; each network's gradients from its own loss
        (the TensorFlow tutorial's two-tape step)."""
        real = self._real(indices)
        fake = self.generator(z[:len(real)])
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        d_loss, g_loss = self._d_loss(real_logits, fake_logits), self._g_loss(fake_logits)
        g_params, d_params = list(self.generator.parameters()), list(self.discriminator.parameters())
        g_grads = torch.autograd.grad(g_loss, g_params, retain_graph=True)
        d_grads = torch.autograd.grad(d_loss, d_params)
        for params, grads in ((g_params, g_grads), (d_params, d_grads)):
            for param, grad in zip(params, grads):
                param.grad = grad
        self._step(self.opt_d, self.discriminator)
        self._step(self.opt_g, self.generator)
        return self._metrics(d_loss, g_loss, real_logits, fake_logits)

    @staticmethod
    def _metrics(d_loss, g_loss, real_logits, fake_logits) -> dict[str, torch.Tensor]:
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
        }

    @torch.no_grad()
    def _generate(self, noise: torch.Tensor) -> np.ndarray:
        self.generator.eval()
        try:
            return np.concatenate([to_uint8(self.generator(chunk)) for chunk in noise.split(512)])
        finally:
            self.generator.train()

    def fixed_samples(self) -> np.ndarray:
        return self._generate(self.fixed_noise)

    def generate(self, count: int, seed: int) -> np.ndarray:
        return self._generate(torch.from_numpy(sample_noise(seed, count, self.latent_dim)).to(self.device))

    def save(self, directory: Path) -> None:
        cpu = lambda module: {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}  # noqa: E731
        save_file(cpu(self.generator), str(directory / "generator.safetensors"))
        save_file(cpu(self.discriminator), str(directory / "discriminator.safetensors"))
        state = {
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "rng_noise": self.noise.get_state(),
            "fixed_noise": self.fixed_noise.cpu(),
            "step": self.step,
        }
        torch.save(state, directory / "state.pt")

    def load(self, directory: Path, *, generator_only: bool = False) -> None:
        """Restore a checkpoint: tensors from safetensors, the rest with weights_only=True,
        so nothing in the files is ever executed."""
        _load_weights(self.generator, directory / "generator.safetensors", self.device)
        if generator_only:
            return
        _load_weights(self.discriminator, directory / "discriminator.safetensors", self.device)
        path = directory / "state.pt"
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except Exception as error:
            raise CheckpointError(path, error) from None
        torch.set_rng_state(state["rng_cpu"].cpu())
        if state["rng_cuda"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
        self.noise.set_state(state["rng_noise"].cpu())
        self.fixed_noise = state["fixed_noise"].to(self.device)
        self.step = state["step"]


def _load_weights(module: torch.nn.Module, path: Path, device) -> None:
    try:
        module.load_state_dict(load_file(str(path), device=str(device)))
    except Exception as error:
        raise CheckpointError(path, error) from None
