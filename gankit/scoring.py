"""Scoring a run's generator with FID, KID, IS or any metric a plugin registers, recorded
with exactly how each number was computed (the contract the metrics and extractors
implement is ``gankit.evaluation``).

Generated images come from a checkpoint (``gankit evaluate``: ``gankit.sampling.evaluate_run``)
or from the live trainer (a recipe's ``[eval]``: ``gankit.training_eval``); real images from
the run's dataset. Both go through one feature extractor, and the metrics compare the
features. The real images' features are cached,
keyed by the data's sha256, the extractor's description and the sample count, in the
reference file format of ``gankit stats`` (gankit.reference), so a second evaluation
extracts only the generated images; a given reference file stands in for the real images.
Beside each score goes its floor: what a second, disjoint real sample scores.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gankit.backend import trainer_classes
from gankit.data import DataContext, DataError, ImageData, default_cache_dir, even_labels
from gankit.eval_config import EvalConfig, EvalPlan
from gankit.evaluation import EvalError, ExtractorContext, FeatureExtractor, Features, Metric, data_sha256
from gankit.files import write_json
from gankit.reference import BadReference, Reference, disjoint_subset, mismatch, read_reference, write_reference
from gankit.registry import Component, Registry

if TYPE_CHECKING:
    import numpy as np


Progress = Callable[[str, int, int], None]
"""Told (what, done, total) as features are extracted."""
EXTRACT_CHUNK = 1000


def real_subset(total: int, count: int, seed: int) -> np.ndarray:
    """The indices of the real images an evaluation of ``count`` images compares against:
    all ``total`` of them, or a sorted random subset drawn with ``seed``."""
    import numpy as np

    if count >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, count, replace=False))


def _same_name(one: str, other: str) -> bool:
    """Whether two declared score names can be the same name (``*`` at the end: any ending)."""
    one_stem, other_stem = one.rstrip("*"), other.rstrip("*")
    if one.endswith("*") and other.endswith("*"):
        return one_stem.startswith(other_stem) or other_stem.startswith(one_stem)
    if one.endswith("*") or other.endswith("*"):
        prefix, name = (one_stem, other) if one.endswith("*") else (other_stem, one)
        return name.startswith(prefix)
    return one == other


def check_score_names(metrics: dict[str, Metric]) -> None:
    """EvalError, before anything is scored, if two metrics declare (``Metric.scores``) a
    score of the same name, or one declares the evaluation's own ``class_accuracy``."""
    taken: dict[str, str | None] = {"class_accuracy": None}
    for name, metric in metrics.items():
        for score in getattr(metric, "scores", ()):
            for other, owner in taken.items():
                if not _same_name(score, other):
                    continue
                if owner is None:
                    raise EvalError(f"metric {name!r} reports a score named {other!r}, which the evaluation itself "
                                    "reports (its class accuracy); the metric's author must rename it")
                raise EvalError(f"metrics {owner!r} and {name!r} both report a score named {score.rstrip('*')!r}; "
                                "evaluate them separately (gankit evaluate --metric ONE), or leave one out")
        taken.update({score: name for score in getattr(metric, "scores", ())})


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def resolve_plan(config: EvalConfig, registry: Registry) -> EvalPlan:
    """The metric and extractor components ``config`` names; EvalError if one is unknown
    or a metric's parameters are not the ones it takes."""
    try:
        return EvalPlan.resolve(config, registry)
    except (LookupError, ValueError) as error:
        raise EvalError(str(error)) from None


def _available(component: Component) -> Component:
    problem = component.requirement_problem()
    if problem:
        raise EvalError(problem)
    return component


def _read_cached(path: Path, warn: Callable[[str], None]) -> Reference | None:
    """The cached real features in ``path``; None if there are none, or (with a warning,
    the file removed) if they are damaged."""
    if not path.is_file():
        return None
    try:
        return read_reference(path)
    except BadReference as error:
        warn(f"the cached features {path} are damaged ({error}); extracting them again")
        path.unlink(missing_ok=True)
        return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


class Evaluator:
    """One evaluation setup for one run: the metrics, the feature extractor and the real
    features, each made once and reused for every batch of generated images scored."""

    def __init__(self, plan: EvalPlan, recipe, *, cache_dir: Path | None = None,
                 loaded: dict[str, ImageData] | None = None,
                 info: Callable[[str], None] = print, warn: Callable[[str], None] = print,
                 progress: Progress | None = None):
        """``loaded``: splits of the recipe's dataset already in memory (a run's training data).
        ``progress(what, done, total)`` is told how feature extraction is getting on."""
        config = self.config = plan.config
        self.progress = progress
        self.cache_dir = cache_dir or default_cache_dir()
        self.metrics: dict[str, Metric] = {
            name: _available(component).factory(plan.metric_params[name]) for name, component in plan.metrics.items()
        }
        check_score_names(self.metrics)
        extractor_component = _available(plan.extractor)
        self.dataset_table = recipe.dataset.as_table()
        self._splits: dict[str, ImageData] = dict(loaded or {})
        try:
            self._dataset = recipe.dataset.component.factory(recipe.dataset.params, DataContext(self.cache_dir, warn))
        except DataError as error:
            raise EvalError(f"{recipe.path}: dataset: {error}") from None
        self.warn = warn
        context = ExtractorContext(self.cache_dir, lambda: self.load("train"), info, warn)
        try:
            self.extractor: FeatureExtractor = extractor_component.factory(plan.extractor_params, context)
        except DataError as error:
            raise EvalError(f"feature extractor {config.extractor_name!r}: {error}") from None
        self._real: tuple[Reference, dict[str, Any]] | None = None
        self._floor: dict[str, float] | None = None
        self._generated_count: int | None = None
        if config.reference:
            shape = loaded["train"].images.shape[1:] if loaded and "train" in loaded else None
            self._real = self._given_reference(Path(config.reference), shape)
            self._warn_if_other_data(self._real[0], Path(config.reference))

    @property
    def uses_real(self) -> bool:
        return any(metric.uses_real for metric in self.metrics.values())

    def load(self, split: str) -> ImageData:
        if split not in self._splits:
            try:
                self._splits[split] = self._dataset.load(split)
            except DataError as error:
                raise EvalError(f"dataset {self.dataset_table['use']!r}: {error}") from None
        return self._splits[split]

    def _given_reference(self, path: Path, shape) -> tuple[Reference, dict[str, Any]]:
        """``[eval] reference`` / ``--reference``: refused in one line unless it was made as this evaluation would."""
        try:
            reference = read_reference(path)
        except BadReference as error:
            raise EvalError(f"reference {path}: {error}; make one with gankit stats RECIPE -o FILE") from None
        if problem := mismatch(reference, self.extractor.describe(), shape):
            raise EvalError(f"reference {path}: {problem}; make one with gankit stats RECIPE -o FILE "
                            f"--features {self.config.extractor_name}")
        return reference, {**reference.meta, "reference": {"path": str(path), "sha256": file_sha256(path)}}

    def _warn_if_other_data(self, reference: Reference, path: Path) -> None:
        """A reference stands in for data that need not be here (that is what makes it
        shareable); where its split is loaded anyway (a run's training data), a reference
        made from other images is worth a warning: its scores compare against those."""
        split = reference.meta.get("split")
        made_from = reference.meta.get("sha256")
        if split in self._splits and made_from and data_sha256(self._splits[split]) != made_from:
            self.warn(f"reference {path} was made from other {split} images than this run's "
                      f"(sha256 {made_from[:12]}... against {data_sha256(self._splits[split])[:12]}...); "
                      "its scores compare against those")

    def reference(self) -> tuple[Reference, dict[str, Any]]:
        """The real side: the given reference file, else the real images' features (from the
        cache when there), a disjoint second sample for the floor, and what they are."""
        if self._real is None:
            data = self.load(self.config.split)
            total = len(data.images)
            count = min(self.config.n, total)
            key = _digest({"data": data_sha256(data), "count": count, "seed": self.config.seed if count < total else None,
                           "extractor": self.extractor.describe(), "format": "reference-1",
                           "floor_from": self._other_split_sha256() if total - count < count else None})
            path = self.cache_dir / "eval" / "real" / f"{key}.npz"
            reference = _read_cached(path, self.warn)
            if reference is None:
                reference = self.make_reference(data, count)
                write_reference(path, reference)
            self._real = reference, {**reference.meta, "features_cache": str(path)}
        return self._real

    def _other_split_sha256(self) -> str | None:
        """The checksum of the split the floor is drawn from when the compared one is too small."""
        try:
            return data_sha256(self.load("test" if self.config.split == "train" else "train"))
        except EvalError:
            return None

    def make_reference(self, data: ImageData, count: int) -> Reference:
        """``count`` of ``data``'s images (``config.split``) and a disjoint sample of as many
        from the same split, or from the other one when this one is too small."""
        seed, split, total = self.config.seed, self.config.split, len(data.images)
        chosen = real_subset(total, count, seed)
        record = {
            "extractor": self.extractor.describe(), "dataset": self.dataset_table, "split": split,
            "source": data.source, "sha256": data_sha256(data), "images_in_split": total, "count": count,
            "seed": seed, "selection": f"random subset drawn with seed {seed}" if count < total else "all",
            "image": list(data.images.shape[1:]), "class_names": list(data.class_names),
        }
        real = self._labelled(self._extract(data.images[chosen], "real images"), data.labels[chosen], data.class_names)
        other = "test" if split == "train" else "train"
        floor_data, floor_indices, how, why = None, None, None, None
        if total - count >= count:
            floor_data, floor_indices = data, disjoint_subset(total, chosen, count, seed)
            how = f"{count:,} other images of the {split} split, disjoint from those compared against, drawn with seed {seed}"
        else:
            try:
                floor_data = self.load(other)
            except EvalError as error:
                why = (f"the {split} split has {total:,} images, too few for two disjoint samples "
                       f"of {count:,}, and the {other} split does not load ({error})")
            else:
                if len(floor_data.images) >= count:
                    floor_indices = real_subset(len(floor_data.images), count, seed)
                    how = f"{count:,} images of the {other} split, drawn with seed {seed}"
                else:
                    why = (f"the {split} split has {total:,} images and the {other} split {len(floor_data.images):,}: "
                           f"too few for a second real sample of {count:,}; score fewer (-n)")
        floor = None
        if floor_indices is not None:
            floor = self._labelled(self._extract(floor_data.images[floor_indices], "real images (floor)"),
                                   floor_data.labels[floor_indices], floor_data.class_names)
        record["floor"] = {"how": f"the scores of {how}, as if generated"} if floor is not None else {"why_not": why}
        return Reference(real, floor, record)

    @staticmethod
    def _labelled(features: Features, labels, class_names) -> Features:
        import numpy as np

        return replace(features, labels=np.asarray(labels, np.int64), class_names=tuple(class_names))

    def real(self) -> tuple[Features, dict[str, Any]]:
        """The real images' features and what they are (eval.json's ``real``)."""
        reference, record = self.reference()
        return reference.real, {key: value for key, value in record.items() if key != "extractor"}

    def floor(self) -> tuple[dict[str, float], str]:
        """What a second real sample scores against the first (a perfect generator's scores),
        once per evaluator, and how it was made or why it could not be."""
        reference, record = self.reference()
        made = record.get("floor", {})
        if reference.floor is None:
            return {}, f"not made: {made.get('why_not', 'the reference holds no second real sample')}"
        if self._floor is None:
            self._floor = self._compare(reference.floor, reference.real)
            known = getattr(self.extractor, "class_labels", None)
            labels = reference.floor.labels
            if known is not None and labels is not None and len(labels) and labels.min() >= 0:
                self._floor["class_accuracy"] = class_accuracy(reference.floor.logits, labels, known)["overall"]
        return dict(self._floor), made["how"]

    def _extract(self, images: np.ndarray, what: str) -> Features:
        """The extractor's features, a chunk at a time when someone watches the progress
        (each image's features do not depend on the others in its batch)."""
        import numpy as np

        if self.progress is None:
            return self.extractor.extract(images)
        chunks = []
        for start in range(0, len(images), EXTRACT_CHUNK):
            self.progress(what, start, len(images))
            chunks.append(self.extractor.extract(images[start:start + EXTRACT_CHUNK]))
        self.progress(what, len(images), len(images))
        return Features(np.concatenate([c.features for c in chunks]), np.concatenate([c.logits for c in chunks]))

    def score(self, images: np.ndarray) -> dict[str, float]:
        """Every metric's scores for these generated uint8 (N, H, W, C) images."""
        return self.score_classes(images)[0]

    def score_classes(self, images: np.ndarray, labels: np.ndarray | None = None,
                      names: tuple[str, ...] = ()) -> tuple[dict[str, float], dict[str, Any] | None]:
        """``score``, and for images generated as classes ``labels`` (a conditional run), how
        often the extractor's classifier assigns each image its class: ``class_accuracy``
        among the scores, and overall and per class (named by ``names``) in the second value.
        That is None without labels or when the extractor does not classify the run's classes."""
        import numpy as np

        self._generated_count = len(images)
        if self.config.reference and (problem := mismatch(self._real[0], self.extractor.describe(), images.shape[1:])):
            raise EvalError(f"reference {self.config.reference}: {problem}; make one from this run's dataset "
                            "with gankit stats RECIPE -o FILE")
        try:
            fake = self._extract(images, "generated images")
        except DataError as error:
            raise EvalError(f"feature extractor {self.config.extractor_name!r}: {error}") from None
        if labels is not None:
            fake = replace(fake, labels=np.asarray(labels, np.int64), class_names=tuple(names))
        scores = self._compare(fake, self.real()[0] if self.uses_real else None)
        known = getattr(self.extractor, "class_labels", None)
        if labels is None or known is None:
            return scores, None
        accuracy = class_accuracy(fake.logits, labels, known, names)
        scores["class_accuracy"] = accuracy["overall"]
        return scores, accuracy

    def score_generator(self, trainer, *, raw: bool = False,
                        names: tuple[str, ...] = ()) -> tuple[dict[str, float], dict[str, Any] | None]:
        """``score_classes`` of ``config.n`` images the trainer generates from ``config.seed``
        (its EMA generator unless ``raw``); a conditional one draws every class evenly."""
        classes = trainer_classes(trainer)
        labels = even_labels(classes, self.config.n) if classes else None
        by_class = {"labels": labels} if labels is not None else {}
        return self.score_classes(trainer.generate(self.config.n, self.config.seed, raw=raw, **by_class), labels, names)

    def _compare(self, fake: Features, real: Features | None) -> dict[str, float]:
        scores: dict[str, float] = {}
        for name, metric in self.metrics.items():
            for key, value in metric.compute(fake, real, self.config.seed).items():
                if key in scores:
                    raise EvalError(f"two metrics report a score named {key!r}; evaluate {name!r} on its own")
                scores[key] = float(value)
        return scores

    def describe(self) -> dict[str, Any]:
        """How the scores are computed: the protocol, metrics, extractor, real data (what eval.json records)."""
        return {
            "protocol": self.protocol(),
            "metrics": {name: metric.describe() for name, metric in self.metrics.items()},
            "extractor": self.extractor.describe(),
            "real": self.real()[1],
        }

    def protocol(self) -> dict[str, Any]:
        """What a score is not comparable without, in one place: the images on each side,
        the real split, the extractor, its weights' sha256 and its resize filter."""
        extractor = self.extractor.describe()
        real = self.real()[1]
        reference = real.get("reference")
        return {"generated_images": self._generated_count or self.config.n,
                "real_images": real["count"],
                "split": real["split"],
                **({"reference": reference} if reference else {}),
                "extractor": extractor.get("name"),
                "weights_sha256": extractor.get("weights_sha256"),
                "resize": extractor.get("resize", "not stated by the extractor")}


def class_accuracy(logits: np.ndarray, labels: np.ndarray, known: list[int], names: tuple[str, ...] = ()) -> dict:
    """How often ``argmax(logits)`` (logit i meaning label ``known[i]``) is the label each
    image was generated for: overall and per class (by name, else by label)."""
    import numpy as np

    predicted = np.asarray(known)[np.asarray(logits).argmax(1)]
    correct = predicted == np.asarray(labels)
    name = lambda label: names[label] if label < len(names) else str(label)  # noqa: E731
    return {"overall": float(correct.mean()),
            "per_class": {name(int(label)): float(correct[labels == label].mean()) for label in np.unique(labels)},
            "images_per_class": int(np.bincount(labels).max()),
            "how": "the feature extractor's classifier assigns each generated image the class it was drawn for"}


def floor_record(evaluator: Evaluator, scores: dict[str, float]) -> dict[str, Any]:
    """eval.json's ``floor`` (the real-vs-real value of each of ``scores`` that has one) and ``floor_how``."""
    floor, how = evaluator.floor()
    return {"floor": {key: value for key, value in floor.items() if key in scores}, "floor_how": how}


def update_record(path: Path, keys: tuple[str, ...], record: dict[str, Any]) -> None:
    """Set ``keys`` (a path into the JSON object in ``path``) to ``record``, keeping the rest."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        document = {}
    document = document if isinstance(document, dict) else {}
    node = document
    for key in keys[:-1]:
        node[key] = node[key] if isinstance(node.get(key), dict) else {}
        node = node[key]
    node[keys[-1]] = record
    write_json(path, document)
