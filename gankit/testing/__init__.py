"""Conformance checks for plugin authors: call them from your own pytest.

Each check finds your component among the installed plugins by name (install your
package first, e.g. ``pip install -e .``), runs it the way gankit does and raises
``AssertionError`` saying what is wrong. The bundled plugins pass the same checks
(``tests/test_conformance.py``). Everything runs on the CPU on the kit's own tiny
fixtures (``gankit.testing.fixtures``), in seconds, with no dataset and no download.

- ``check_architecture``: it builds, its shapes fit the data, and it trains a few steps
  on every installed backend it supports (with labels, when it is conditional), with the
  same parameter counts on each.
- ``check_dataset``: ``load(split)`` returns what ``register_datasets`` promises.
- ``check_exporter``: it survives a real run stopped with Ctrl-C and resumed to the end.
- ``check_backend``: the same seed gives the same losses; a resume is lossless; a
  generator-only load draws the same samples; a damaged or mismatched checkpoint is a
  ``CheckpointError``.
- ``check_metric``: finite scores of stable names, deterministic for a seed, better for
  identical feature sets than disjoint ones in the direction it declares.
"""

from gankit.testing.dataset import check_dataset
from gankit.testing.exporter import check_exporter
from gankit.testing.fixtures import hand_made_features, installed_backends, labelled_images, noise_images
from gankit.testing.metric import check_metric
from gankit.testing.training import check_architecture, check_backend

__all__ = ["check_architecture", "check_dataset", "check_exporter", "check_backend", "check_metric",
           "installed_backends", "labelled_images", "noise_images", "hand_made_features"]
