"""What every backend shares, written once in gankit.backend: its parameters and the
choice of device, uint8 conversion, chunked generation and parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from gankit import nn
from gankit.backend import SAMPLE_CHUNK, BackendError, BackendParams, Device, generate_images, parameter_counts, to_uint8


class TwoAccelerators(BackendParams):
    ACCELERATORS = {"gpu": ("cuda",), "npu": ()}


def test_a_device_is_validated_against_the_backends_accelerators():
    for good in ("auto", "cpu", "gpu", "cuda:1", "npu:0"):
        TwoAccelerators(device=good)
    for bad in ("mps", "cpu:0", "auto:1", "gpu:x", "GPU", ""):
        with pytest.raises(ValidationError, match="use auto, cpu, gpu, gpu:N, npu or npu:N"):
            TwoAccelerators(device=bad)
    with pytest.raises(ValidationError):
        TwoAccelerators(threads=-1)


def test_the_device_is_chosen_from_what_the_machine_has():
    assert TwoAccelerators().choose_device({"gpu": 0, "npu": 2}) == Device("npu", 0)
    assert TwoAccelerators().choose_device({"gpu": 0, "npu": 0}) == Device("cpu")
    assert TwoAccelerators(device="cuda:1").choose_device({"gpu": 2}) == Device("gpu", 1)
    assert str(Device("gpu", 1)) == "gpu:1" and str(Device("cpu")) == "cpu"
    with pytest.raises(BackendError, match=r"'gpu:2' is not available here \(2 gpu device\(s\) visible\); use device"):
        TwoAccelerators(device="gpu:2").choose_device({"gpu": 2})


def test_generator_output_becomes_uint8_a_chunk_at_a_time():
    assert to_uint8(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32)).tolist() == [0, 0, 128, 191, 255, 255]
    seen = []

    def forward(noise):
        seen.append(len(noise))
        return np.tanh(noise[:, :4]).reshape(-1, 2, 2, 1)

    noise = np.random.default_rng(0).standard_normal((SAMPLE_CHUNK * 2 + 3, 8)).astype(np.float32)
    images = generate_images(forward, noise)
    assert seen == [SAMPLE_CHUNK, SAMPLE_CHUNK, 3]
    assert images.dtype == np.uint8 and images.shape == (len(noise), 2, 2, 1)
    np.testing.assert_array_equal(images, to_uint8(forward(noise)))


def test_parameter_counts_come_from_the_description_or_else_the_framework():
    generator = nn.Network((4,), (nn.Dense(6), nn.Tanh()))
    discriminator = nn.Network((6,), (nn.Dense(1),))
    described = nn.Architecture(4, generator, discriminator)
    assert parameter_counts(described, lambda name: pytest.fail("counted natively")) == {
        "generator": 30, "discriminator": 7}
    assert parameter_counts(None, len) == {"generator": 9, "discriminator": 13}
