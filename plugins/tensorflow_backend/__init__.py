"""The TensorFlow backend: gankit.nn compiled to Keras layers (NHWC), one ``tf.function``
training step, ``tf.train.Checkpoint`` checkpoints.

TensorFlow is imported only when a run uses this backend, through ``import_tensorflow``,
which keeps TensorFlow's start-up chatter (C++ log lines, absl and Python warnings) out of
the terminal. Set ``GANKIT_TF_VERBOSE=1`` to see all of it; an explicit
``TF_CPP_MIN_LOG_LEVEL`` is respected either way.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from pydantic import Field

from gankit import hookimpl
from gankit.backend import BackendParams, lazy_backend


class TensorflowParams(BackendParams):
    ACCELERATORS = {"gpu": ("cuda",)}
    device: str = Field("auto", description="auto, cpu, gpu or gpu:N (cuda and cuda:N are accepted too)")
    threads: int = Field(0, ge=0, le=512, description="CPU threads per op (0: TensorFlow's default)")
    jit_compile: bool = Field(False, description="compile the training step with XLA")


def verbose() -> bool:
    return os.environ.get("GANKIT_TF_VERBOSE", "") not in ("", "0")


def import_tensorflow():
    """``import tensorflow``, quietly unless GANKIT_TF_VERBOSE is set, with Keras on it
    (whatever KERAS_BACKEND says, unless Keras was already imported on another backend).

    Where torch is installed too, torchvision (or else ``torch._dynamo``, which torch's
    optimizers import) is imported first: either, imported after TensorFlow, kills the
    process with a segmentation fault in their shared libraries, and a process may well use
    both (evaluating a TensorFlow run, a batch that mixes backends)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    if "tensorflow" not in sys.modules:
        first = next((name for name in ("torchvision", "torch") if importlib.util.find_spec(name)), None)
        if first:
            importlib.import_module("torchvision" if first == "torchvision" else "torch._dynamo")
    if "tensorflow" in sys.modules or verbose():
        import tensorflow as tf
    else:
        tf = _quiet_import()
    if tf.keras.backend.backend() != "tensorflow":
        from gankit.backend import BackendError

        raise BackendError(f"Keras already runs on {tf.keras.backend.backend()} in this process; "
                           "set KERAS_BACKEND=tensorflow")
    return tf


def _quiet_import():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Some lines are written by C++ before TF_CPP_MIN_LOG_LEVEL is read: mute stderr itself.
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    tf.keras.config.disable_interactive_logging()
    return tf


def _trainer():
    from gankit_plugins.tensorflow_backend.trainer import TensorflowTrainer  # imports TensorFlow, quietly

    return TensorflowTrainer


@hookimpl
def register_backends(register):
    register("tensorflow", lazy_backend(_trainer), params=TensorflowParams, requires=("tensorflow",),
             description="TensorFlow 2 / Keras 3: CPU or GPU; tf.train.Checkpoint checkpoints")
