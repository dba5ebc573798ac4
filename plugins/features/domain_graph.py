"""The domain classifier's features as a differentiable function of a backend's own image
tensors (floats in [-1, 1]; NCHW on torch, NHWC on TensorFlow), for losses such as
``gankit project``'s. On TensorFlow the trained torch weights are rebuilt as plain
TensorFlow operations (the same padding, the same flattening order)."""

from __future__ import annotations

from typing import Any, Callable

CONVOLUTIONS = ((0, 2), (2, 1), (4, 1))
"""(index in the torch Sequential, padding on each side) of the three stride-2 convolutions."""
HIDDEN = 8
"""The index of the dense layer whose ReLU output is the features."""
POOLED = 4


def torch_features(model, scale: float) -> Callable[[Any], Any]:
    hidden = model[:-1].requires_grad_(False)
    return lambda images: hidden.to(images.device)(images) / scale


def tensorflow_features(model, scale: float, size: tuple[int, int]) -> Callable[[Any], Any] | None:
    """None when the adaptive 4x4 pool does not fall on whole windows for this image size."""
    import tensorflow as tf

    height, width = size
    for _ in CONVOLUTIONS:
        height, width = -(-height // 2), -(-width // 2)
    if height % POOLED or width % POOLED:
        return None
    window = (height // POOLED, width // POOLED)
    state = {name: value.detach().cpu().numpy() for name, value in model.state_dict().items()}
    convolutions = [(tf.constant(state[f"{index}.weight"].transpose(2, 3, 1, 0)), tf.constant(state[f"{index}.bias"]),
                     [[0, 0], [pad, pad], [pad, pad], [0, 0]]) for index, pad in CONVOLUTIONS]
    kernel, bias = tf.constant(state[f"{HIDDEN}.weight"].T), tf.constant(state[f"{HIDDEN}.bias"])

    def features(images):
        x = images
        for weights, offsets, padding in convolutions:
            x = tf.nn.relu(tf.nn.conv2d(x, weights, 2, padding) + offsets)
        x = tf.nn.avg_pool2d(x, window, window, "VALID")
        x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [tf.shape(x)[0], -1])  # torch flattens channels first
        return tf.nn.relu(tf.matmul(x, kernel) + bias) / scale

    return features
