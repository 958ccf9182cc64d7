"""What the two trainers (pretraining and detection, both detectron2 trainers) share beyond
detectron2's hooks: writers, the seeding and curves.png hooks, the divergence error."""
from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import defaultdict

import numpy as np
import torch
from detectron2.engine import HookBase, hooks
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter, get_event_storage

from resnet_det.data.samplers import derived_seed
from resnet_det.utils.files import atomic_write

__all__ = ["TrainingDivergedError", "ResumableJSONWriter", "PeriodicWriter", "PlotCurves", "SeedEachIteration",
           "build_writers", "divergence_message"]

logger = logging.getLogger(__name__)


class TrainingDivergedError(FloatingPointError):
    """A NaN/inf loss or weights during training; the message names the iteration, the loss
    terms and the last good checkpoint."""


def divergence_message(cause: str, iteration: int, losses: dict, last_checkpoint, advice: str) -> str:
    """The one text of a diverged run: ``cause``, the iteration, the loss terms last recorded,
    the last good checkpoint (kept as it was) and ``advice`` (the config keys to change)."""
    terms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(losses.items())) or "none"
    return (f"{cause}Training diverged at iteration {iteration}; loss terms last recorded: {terms}. "
            f"The last good checkpoint, {last_checkpoint or '(none written yet)'}, is left as it "
            f"was. {advice}")


class ResumableJSONWriter(JSONWriter):
    """detectron2's JSONWriter whose :meth:`trim` drops the lines a resumed run logs again, so that
    metrics.json holds each iteration once, and which writes values put late for an iteration
    already written (the final evaluation) instead of dropping them."""

    def __init__(self, json_file, window_size=20):
        super().__init__(json_file, window_size)
        self._path = json_file
        self._written = {}  # key -> the last iteration written for it

    def write(self):
        """Append one line per iteration for the values not written yet."""
        lines = defaultdict(dict)
        for key, (value, it) in get_event_storage().latest_with_smoothing_hint(self._window_size).items():
            if it > self._written.get(key, -1):
                lines[it][key] = value
                self._written[key] = it
        for it in sorted(lines):
            self._file_handle.write(json.dumps({**lines[it], "iteration": it}, sort_keys=True) + "\n")
        self._file_handle.flush()

    def trim(self, last_kept_iter: int) -> None:
        """Keep only the lines of iterations <= ``last_kept_iter`` (all earlier lines of the file)."""
        self._file_handle.close()
        kept = []
        with open(self._path) as f:
            for line in f:
                try:
                    if json.loads(line).get("iteration", 0) <= last_kept_iter:
                        kept.append(line)
                except ValueError:  # a line cut short by a kill
                    pass
        with atomic_write(self._path, mode="w") as f:
            f.writelines(kept)
        self._file_handle = open(self._path, "a")


def build_writers(output_dir, max_iter, first_iter=None):
    """detectron2's default writers (console, metrics.json, TensorBoard); ``first_iter`` (the first
    iteration this run logs) trims metrics.json and purges TensorBoard events from there on. A
    trainer that learns it later (detection) calls :meth:`ResumableJSONWriter.trim` itself."""
    json_writer = ResumableJSONWriter(os.path.join(output_dir, "metrics.json"))
    if first_iter is not None:
        json_writer.trim(first_iter - 1)
    return [CommonMetricPrinter(max_iter), json_writer,
            TensorboardXWriter(output_dir, purge_step=first_iter or None)]


class SeedEachIteration(HookBase):
    """Reseed the global RNGs from (the trainer's ``seed``, iteration, rank) before each step: a
    resumed run draws the same numbers as an uninterrupted one without RNG states in checkpoints."""

    def before_step(self):
        seed = derived_seed(self.trainer.seed, self.trainer.iter, comm.get_rank())
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


class PlotCurves(HookBase):
    """``plot(metrics.json path)`` after each evaluation and at the end (main process), for
    curves.png. Registered after the writers, so the file holds what it plots."""

    def __init__(self, output_dir, eval_period, plot):
        self._metrics = os.path.join(output_dir, "metrics.json")
        self._eval_period, self._plot_fn = eval_period, plot

    def _plot(self):
        if comm.is_main_process() and os.path.isfile(self._metrics):
            try:
                self._plot_fn(self._metrics)
            except Exception as e:  # a picture must never stop training
                logger.warning(f"curves.png not drawn: {type(e).__name__}: {e}")

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._eval_period > 0 and next_iter % self._eval_period == 0 and next_iter != self.trainer.max_iter:
            self._plot()

    def after_train(self):
        self._plot()


class PeriodicWriter(hooks.PeriodicWriter):
    """detectron2's ``PeriodicWriter`` (every ``period`` iterations and at the last one) that also
    writes once ``seconds`` passed since the last write: on a CPU, where an iteration can take
    seconds, the log still shows progress every minute."""

    def __init__(self, writers, period=20, seconds=60.0):
        super().__init__(writers, period)
        self._seconds, self._last = seconds, time.perf_counter()

    def after_step(self):
        done, now = self.trainer.iter + 1, time.perf_counter()
        if done % self._period == 0 or done == self.trainer.max_iter or now - self._last >= self._seconds:
            for writer in self._writers:
                writer.write()
            self._last = now
