"""The torch generator as one standalone file (``gankit export``): ONNX through
``torch.onnx.export`` from ``torch.export`` (the exporter torch keeps; it needs onnx and
onnxscript), or TorchScript traced with ``torch.jit.trace``, which loads with torch alone.

Both wrap a CPU copy of the generator in sampling mode so that the file takes ``noise``
(and ``labels``) and returns ``images`` NHWC in [-1, 1]: what ``generate`` computes before
its uint8 conversion.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import torch

ONNX_OPSET = 18
"""Run by onnxruntime 1.17 and later, and by onnxruntime-web."""
EXAMPLE_BATCH = 2
"""torch.export treats a batch of 1 as a constant; the files take any batch size."""


class _Images(torch.nn.Module):
    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.generator(noise).permute(0, 2, 3, 1)


class _ClassImages(_Images):
    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.generator(noise, labels).permute(0, 2, 3, 1)


class GeneratorExport:
    """The torch trainer's optional export capability (``gankit.backend.Trainer``)."""

    def export_formats(self) -> dict[str, tuple[str, ...]]:
        return {"onnx": ("onnx", "onnxscript"), "torchscript": ()}

    def export_generator(self, format: str, folder: Path, *, raw: bool = False) -> dict:
        trained = self.generator if raw or self.average is None else self.average
        generator = copy.deepcopy(trained).cpu().float().to(memory_format=torch.contiguous_format).eval()
        module = (_ClassImages if self.classes else _Images)(generator).eval()
        inputs = [torch.zeros(EXAMPLE_BATCH, self.latent_dim)]
        if self.classes:
            inputs.append(torch.arange(EXAMPLE_BATCH, dtype=torch.int64) % self.classes)
        names = ["noise", "labels"][:len(inputs)]
        if format == "onnx":
            return _onnx(module, tuple(inputs), names, folder / "generator.onnx")
        if format == "torchscript":
            return _torchscript(module, tuple(inputs), folder / "generator.pt")
        raise ValueError(f"the torch backend does not export {format!r}")


def _onnx(module: torch.nn.Module, inputs: tuple, names: list[str], path: Path) -> dict:
    batch = torch.export.Dim("batch")
    # The exporter reports its progress on stdout and warns about what it optimises away.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), input_names=names, output_names=["images"], dynamo=True,
                          dynamic_shapes=tuple({0: batch} for _ in inputs), opset_version=ONNX_OPSET,
                          external_data=False, verbose=False)
    return {"file": path.name, "converter": f"torch.onnx.export (torch.export), torch {torch.__version__}",
            "opset": ONNX_OPSET}


def _torchscript(module: torch.nn.Module, inputs: tuple, path: Path) -> dict:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks TorchScript deprecated, yet loads it
        traced = torch.jit.trace(module, inputs)
    traced.save(str(path))
    return {"file": path.name, "converter": f"torch.jit.trace, torch {torch.__version__}",
            "load": "torch.jit.load(path)(noise[, labels])"}
