"""Spectral normalisation (Miyato et al., 2018), defined once for every backend.

A layer with ``spectral_norm=True`` uses ``W / sigma(W)``, where ``sigma`` is the largest
singular value of its weight viewed as a matrix with one row per output unit or filter,
estimated with a vector ``u`` (one entry per row) that the layer keeps as non-trainable
state and a checkpoint saves. Both functions below are written against a backend's
primitives (``matvec``, ``sum``, ``sqrt``, ``stop_gradient``), so every backend computes
the same ``sigma`` and ``u`` from the same weights, whatever order its weight layout puts
the columns in.

``u`` moves one power iteration per optimizer update of its network, at the start of that
update (``advance``); every forward pass, in training or sampling, reads ``sigma`` from the
current ``u`` (``sigma``). A step therefore does exactly one iteration however many times
it runs the network.
"""

from __future__ import annotations

__all__ = ["advance", "sigma"]

EPS = 1e-12


def _normalise(ops, vector):
    return vector / (ops.sqrt(ops.sum(vector * vector)) + EPS)


def advance(ops, matrix, u):
    """One power iteration: the next ``u`` for ``matrix`` (rows x columns), no gradient."""
    weight = ops.stop_gradient(matrix)
    v = _normalise(ops, ops.matvec(weight, u, transpose=True))
    return ops.stop_gradient(_normalise(ops, ops.matvec(weight, v)))


def sigma(ops, matrix, u):
    """``u^T W v`` with ``v = normalise(W^T u)``: the spectral-norm estimate, differentiable
    in ``matrix`` (``u`` and ``v`` are constants, as in the paper)."""
    v = ops.stop_gradient(_normalise(ops, ops.matvec(ops.stop_gradient(matrix), u, transpose=True)))
    return ops.sum(u * ops.matvec(matrix, v))
