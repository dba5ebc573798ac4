"""The TensorFlow generator as one standalone model (``gankit export``): a SavedModel of a
``tf.function`` with a fixed input signature (it loads with TensorFlow alone), or ONNX
converted from that same function by tf2onnx.

The function runs the generator in sampling mode on ``noise`` (and ``labels``, int64 as
on every backend) and returns ``images`` NHWC in [-1, 1]: what ``generate`` computes
before its uint8 conversion.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

from gankit_plugins.tensorflow_backend import import_tensorflow

tf = import_tensorflow()
ONNX_OPSET = 18
"""Run by onnxruntime 1.17 and later, and by onnxruntime-web."""


class GeneratorExport:
    """The TensorFlow trainer's optional export capability (``gankit.backend.Trainer``)."""

    def export_formats(self) -> dict[str, tuple[str, ...]]:
        return {"savedmodel": (), "onnx": ("tf2onnx", "onnx")}

    def export_generator(self, format: str, folder: Path, *, raw: bool = False) -> dict:
        model = self.generator if raw or self.average is None else self.average
        signature = [tf.TensorSpec([None, self.latent_dim], tf.float32, name="noise")]
        if self.classes:
            signature.append(tf.TensorSpec([None], tf.int64, name="labels"))

            def images(noise, labels):
                return {"images": self._call(model, noise, tf.cast(labels, tf.int32), False)}
        else:
            def images(noise):
                return {"images": self._call(model, noise, None, False)}
        function = tf.function(images, input_signature=signature, autograph=False)
        if format == "savedmodel":
            return _savedmodel(model, function, folder / "generator")
        if format == "onnx":
            return _onnx(function, signature, folder / "generator.onnx")
        raise ValueError(f"the tensorflow backend does not export {format!r}")


def _savedmodel(model, function, path: Path) -> dict:
    holder = tf.Module()
    holder.generator, holder.images = model, function
    tf.saved_model.save(holder, str(path), signatures={"serving_default": function})
    return {"file": path.name, "converter": f"tf.saved_model.save, TensorFlow {tf.__version__}",
            "load": "tf.saved_model.load(path).signatures['serving_default'](noise=...[, labels=...])['images']"}


def _onnx(function, signature: list, path: Path) -> dict:
    import tf2onnx

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=ONNX_OPSET)
    _name_the_output(model, "images")
    path.write_bytes(model.SerializeToString())
    return {"file": path.name, "converter": f"tf2onnx {tf2onnx.__version__}, TensorFlow {tf.__version__}",
            "opset": ONNX_OPSET}


def _name_the_output(model, name: str) -> None:
    """tf2onnx names the output after the graph's node (``Identity:0``); every format says
    ``images``. The batch dimension is called ``batch`` throughout, as torch's export does."""
    graph = model.graph
    old = graph.output[0].name
    for node in graph.node:
        node.input[:] = [name if value == old else value for value in node.input]
        node.output[:] = [name if value == old else value for value in node.output]
    graph.output[0].name = name
    for value in [*graph.input, *graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
