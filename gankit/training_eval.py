"""A recipe's ``[eval]`` during training: scores at intervals, ``checkpoints/best``, eval.json."""

from __future__ import annotations

from typing import Any, Callable

from gankit import __version__
from gankit.evaluation import EvalError
from gankit import checkpoints
from gankit.rundir import RunDir
from gankit.scoring import Evaluator, floor_record, update_record


class TrainingEvaluation:
    """A recipe's ``[eval]`` during training, listening to the run's events.

    At the first logged step at or after each multiple of ``every``, and at the last step,
    it scores the live generator, emits an EvalLogged (metrics.jsonl, the progress display),
    records how in eval.json and keeps the best checkpoint so far in ``checkpoints/best``
    by the first metric's headline score: GANs often get worse late in training.
    """

    def __init__(self, evaluator: Evaluator, trainer, run_dir: RunDir, emit: Callable[[Any], None],
                 record: dict[str, Any] | None = None):
        """``record``: kept in the best checkpoint's meta besides its step and scores (the recipe's digest)."""
        self.evaluator, self.trainer, self.run_dir, self.emit = evaluator, trainer, run_dir, emit
        self.record = record or {}
        self.key, metric = next(iter(evaluator.metrics.items()))
        self.higher_is_better = bool(getattr(metric, "higher_is_better", False))
        try:
            self.best = checkpoints.best_meta(run_dir)["scores"][self.key]
        except (TypeError, KeyError):
            self.best = None
        self.every = self.total = self.due = 0

    def handle(self, event) -> None:
        from gankit.events import RunStarted, StepLogged

        if isinstance(event, RunStarted):
            self.every = self.evaluator.config.every.in_steps(event.steps_per_epoch)
            self.total = event.total_steps
            self.due = self._next(event.start_step)
        elif isinstance(event, StepLogged) and (event.step >= self.due or event.last):
            self.evaluate(event.step, event.epoch)
            self.due = self._next(event.step)

    def _next(self, step: int) -> int:
        return (step // self.every + 1) * self.every if self.every else self.total

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.higher_is_better else value < self.best

    def evaluate(self, step: int, epoch: int) -> dict[str, float]:
        from gankit.events import CheckpointSaved, EvalLogged

        config = self.evaluator.config
        scores = self.evaluator.score_generator(self.trainer)[0]
        self.emit(EvalLogged(step, epoch, scores))
        if self.key not in scores:
            raise EvalError(f"metric {self.key!r} reports no score named {self.key!r}, so no best checkpoint can be kept")
        if self._better(scores[self.key]):
            self.best = scores[self.key]
            best = checkpoints.save_best(self.run_dir, self.trainer, {"step": step, "epoch": epoch, "scores": scores,
                                                              **self.record})
            self.emit(CheckpointSaved(step, best))
        update_record(self.run_dir.eval, ("during_training",), {
            "gankit_version": __version__,
            "every": str(config.every),
            "best_by": f"{self.key}, {'higher' if self.higher_is_better else 'lower'} is better",
            "last": {"step": step, "scores": scores},
            "best": checkpoints.best_meta(self.run_dir),
            "generated": {"count": config.n, "seed": config.seed},
            **floor_record(self.evaluator, scores),
            **self.evaluator.describe(),
        })
        return scores
