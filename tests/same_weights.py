"""Copy a torch network's weights and BatchNorm statistics into the Keras network compiled
from the same gankit.nn description (a plain sequence of layers, conditional ones
included), so that the two backends start from the same point.

torch keeps images channels-first and Keras channels-last, so a vector that is flattened
from an image, or reshaped into one, holds the same numbers in a different order on each;
Dense kernels and BatchNorm vectors on such a vector are permuted to match.
"""

from __future__ import annotations

import numpy as np

from gankit import nn

ELEMENTWISE = (nn.BatchNorm, nn.ConditionalBatchNorm, nn.Dropout, nn.LeakyReLU, nn.ReLU, nn.Tanh, nn.Sigmoid)


def channels_first_order(shape: tuple[int, ...]) -> np.ndarray:
    """For each position of an (H, W, C) array flattened channels-last, its position when
    flattened channels-first."""
    h, w, c = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def vector_orders(network: nn.Network) -> list[np.ndarray | None]:
    """The torch position of each Keras unit for the vector before each layer and after
    the last (None where the activation is an image)."""
    shapes = [tuple(network.input_shape), *network.shapes()]
    orders: list[np.ndarray | None] = [np.arange(s[0]) if len(s) == 1 else None for s in shapes]
    for index, layer in enumerate(network.layers):  # Flatten fixes the order after it ...
        if isinstance(layer, nn.Flatten) and len(shapes[index]) == 3:
            orders[index + 1] = channels_first_order(shapes[index])
            for after in range(index + 1, len(network.layers)):
                if not isinstance(network.layers[after], ELEMENTWISE):
                    break
                orders[after + 1] = orders[index + 1]
    for index, layer in enumerate(network.layers):  # ... and Reshape fixes the order before it
        if isinstance(layer, nn.Reshape) and len(layer.shape) == 3 and len(shapes[index]) == 1:
            order = channels_first_order(layer.shape)
            orders[index] = order
            for before in range(index - 1, -1, -1):
                if not isinstance(network.layers[before], ELEMENTWISE):
                    break
                orders[before] = order
    return orders


def _torch_layers(torch_model):
    """The torch modules with weights, one per gankit layer (padding/cropping unwrapped)."""
    import torch

    for module in torch_model:
        if isinstance(module, torch.nn.Sequential):
            module = next(m for m in module if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))
        yield module


def _keras_layers(keras_model) -> list:
    """The Keras layers, one per gankit layer of a plain sequence (the functional model's
    input layers left out)."""
    from gankit_plugins.tensorflow_backend.compile import keras

    return [layer for layer in keras_model.layers if not isinstance(layer, keras.layers.InputLayer)]


def copy_torch_to_keras(network: nn.Network, torch_model, keras_model) -> None:
    orders = vector_orders(network)
    numpy = lambda tensor: tensor.detach().cpu().numpy()  # noqa: E731
    layers = zip(network.layers, _torch_layers(torch_model), _keras_layers(keras_model), strict=True)
    for index, (layer, module, keras_layer) in enumerate(layers):
        order_in, order_out = orders[index], orders[index + 1]
        if isinstance(layer, nn.Dense):
            kernel = numpy(module.weight)[order_out][:, order_in].T
            weights = [kernel] + ([numpy(module.bias)[order_out]] if layer.bias else [])
        elif isinstance(layer, (nn.Conv, nn.ConvTranspose)):
            weights = [numpy(module.weight).transpose(2, 3, 1, 0)] + ([numpy(module.bias)] if layer.bias else [])
        elif isinstance(layer, nn.BatchNorm):
            order = order_out if order_out is not None else slice(None)
            weights = [numpy(t)[order] for t in (module.weight, module.bias, module.running_mean, module.running_var)]
        elif isinstance(layer, nn.ConditionalBatchNorm):
            order = order_out if order_out is not None else slice(None)
            keras_layer.scale.assign(numpy(module.scale.weight)[:, order])
            keras_layer.shift.assign(numpy(module.shift.weight)[:, order])
            weights = [numpy(t)[order] for t in (module.norm.running_mean, module.norm.running_var)]
            keras_layer = keras_layer.norm
        elif isinstance(layer, nn.Projection):
            keras_layer.embedding.assign(numpy(module.embedding.weight)[:, order_in])
            weights = [numpy(module.linear.weight)[:, order_in].T] + ([numpy(module.linear.bias)] if layer.bias else [])
            keras_layer = keras_layer.dense
        elif isinstance(layer, nn.JoinClass) and layer.embedding:
            keras_layer.table.assign(numpy(module.embedding.weight))
            continue
        else:
            continue
        keras_layer.set_weights(weights)


def keras_weights_in_torch_order(network: nn.Network, keras_model) -> list[np.ndarray]:
    """Every Keras weight and statistic rearranged into torch's layout and order, in the
    order of ``torch_model.state_dict()`` (without BatchNorm's batch counters)."""
    orders = vector_orders(network)
    found = []
    for index, (layer, keras_layer) in enumerate(zip(network.layers, _keras_layers(keras_model), strict=True)):
        values = [np.asarray(v) for v in keras_layer.get_weights()]
        order_in, order_out = orders[index], orders[index + 1]
        if isinstance(layer, nn.Dense):
            undo_out, undo_in = np.argsort(order_out), np.argsort(order_in)
            found.append(values[0].T[undo_out][:, undo_in])
            found += [values[1][undo_out]] if layer.bias else []
        elif isinstance(layer, (nn.Conv, nn.ConvTranspose)):
            found.append(values[0].transpose(3, 2, 0, 1))
            found += values[1:]
        elif isinstance(layer, nn.BatchNorm):
            undo = np.argsort(order_out) if order_out is not None else slice(None)
            found += [v[undo] for v in values]
    return found


def torch_weights(torch_model) -> list[np.ndarray]:
    """``torch_model.state_dict()`` as numpy arrays, without BatchNorm's batch counters."""
    return [value.detach().cpu().numpy().copy() for key, value in torch_model.state_dict().items()
            if not key.endswith("num_batches_tracked")]
