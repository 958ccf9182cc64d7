"""Pretraining as a detectron2 trainer: :class:`ClassificationTrainer` is a ``SimpleTrainer`` whose
``run_step`` does the classification step, run by detectron2's hooks and the shared checkpointer.
Host syncs happen once per ``SOLVER.LOG_PERIOD``, at checkpoints and at evaluations, never per
step. Iterations are counted done: ``model_000000k.pth`` and metrics line k are the state after k steps."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from detectron2.engine import HookBase, SimpleTrainer, create_ddp_model, hooks
from detectron2.utils import comm
from detectron2.utils.events import JSONWriter
from detectron2.utils.logger import setup_logger

from resnet_det.checkpoint import save_backbone
from resnet_det.checkpoint.checkpointer import LAST_CHECKPOINT, SafeCheckpointer
from resnet_det.config import ConfigError, resnet_options
from resnet_det.config.pretraining import amp_mode, load_pretrain_cfg, validate_pretrain_cfg
from resnet_det.data.imagenet import (
    ClassTreeError,
    ImageFolderDataset,
    build_test_loader,
    build_train_loader,
    iterate_loader,
)
from resnet_det.data.transforms import MixCollate, NormalizeBatch, build_eval_transform, build_train_transform
from resnet_det.engine.hooks import (
    PlotCurves,
    SeedEachIteration,
    TrainingDivergedError,
    build_writers,
    divergence_message,
)
from resnet_det.engine.launch import cap_workers, launch_main, resolve_device, training_argument_parser
from resnet_det.engine.solver import build_lr_scheduler, build_optimizer
from resnet_det.evaluation.accuracy import autocast, evaluate
from resnet_det.models import build_resnet, build_vgg16
from resnet_det.utils.cli import run_cli, silence_known_warnings
from resnet_det.utils.files import atomic_write
from resnet_det.utils.plotting import plot_metric_curves, pretraining_curve_panels, read_metrics_json

__all__ = ["ClassificationTrainer", "build_classifier", "build_datasets", "schedule_lengths",
           "classification_loss", "train", "evaluate_only", "plot_curves", "main", "launch_from_args", "command_line"]

logger = logging.getLogger(__name__)


def build_classifier(cfg, num_classes: int):
    """The network named by ``cfg.MODEL`` with a ``num_classes``-way classifier."""
    if cfg.MODEL.ARCH == "vgg16":
        return build_vgg16(num_classes)
    return build_resnet(num_classes=num_classes, **resnet_options(cfg))


def build_datasets(cfg, *, train=True, ten_crop=False):
    """``(train_set or None, val_set)`` from ``cfg.DATA``; checks both class trees up front."""
    d = cfg.DATA
    common = dict(strict=d.STRICT, seed=cfg.SEED, max_pixels=d.MAX_IMAGE_PIXELS)
    train_set = None
    if train:
        tf = build_train_transform(d.RECIPE, d.CROP_SIZE, tuple(d.RESIZE_RANGE), d.COLOR_JITTER)
        # The paper recipe resizes the short side to at most RESIZE_RANGE[1]: the JPEG
        # decoder may downscale big photos to that size for free.
        draft = d.RESIZE_RANGE[1] if d.RECIPE == "paper" else None
        train_set = ImageFolderDataset(Path(d.ROOT) / d.TRAIN_DIR, tf, draft_short_side=draft, **common)
        if len(train_set.classes) < 2:
            # One class: every label is the same, training "reaches" 0% error and learns nothing.
            raise ClassTreeError(
                f"{train_set.root} holds {len(train_set.classes)} class folder ({train_set.classes[0]}); "
                "classification needs at least two classes (one folder per class, e.g. crops "
                "of each object class, or an ImageNet-layout tree)"
            )
    val_tf = build_eval_transform(d.CROP_SIZE, d.TEST_RESIZE, ten_crop=ten_crop)
    val_set = ImageFolderDataset(Path(d.ROOT) / d.VAL_DIR, val_tf, classes=train_set.classes if train_set else None,
                                 draft_short_side=d.TEST_RESIZE, **common)
    return train_set, val_set


def schedule_lengths(cfg, dataset_size: int, world_size: int) -> SimpleNamespace:
    """Per-rank micro-batch, iterations per epoch, total iterations, and the step, warm-up,
    checkpoint and evaluation points in iterations."""
    s = cfg.SOLVER
    accum = s.GRAD_ACCUM_STEPS
    if s.IMS_PER_BATCH % (world_size * accum):
        raise ConfigError(f"SOLVER.IMS_PER_BATCH={s.IMS_PER_BATCH} must be divisible by the number of "
                         f"processes ({world_size}) x SOLVER.GRAD_ACCUM_STEPS ({accum})")
    micro = s.IMS_PER_BATCH // (world_size * accum)
    per_rank_step = micro * accum
    iters_per_epoch = (-(-dataset_size // world_size)) // per_rank_step
    if iters_per_epoch == 0:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH={s.IMS_PER_BATCH} exceeds the training set "
                         f"({dataset_size} images over {world_size} processes); lower it")
    max_iter = s.MAX_ITER if s.MAX_ITER > 0 else max(1, round(s.EPOCHS * iters_per_epoch))
    return SimpleNamespace(
        micro_batch=micro,
        samples_per_rank_epoch=iters_per_epoch * per_rank_step,
        samples_per_rank_step=per_rank_step,
        iters_per_epoch=iters_per_epoch,
        max_iter=max_iter,
        steps=sorted({round(e * iters_per_epoch) for e in s.STEP_EPOCHS} - {0}),
        warmup_iters=round(s.WARMUP_EPOCHS * iters_per_epoch),
        checkpoint_period=s.CHECKPOINT_PERIOD or iters_per_epoch,
        eval_period=cfg.TEST.EVAL_PERIOD or max_iter,  # 0: only after training
    )


def classification_loss(logits, targets, label_smoothing=0.0):
    """Cross-entropy for hard (``B``) or mixed soft (``B x C``) targets, in float32."""
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def plot_curves(records, path) -> Path:
    """Train/val top-1 error vs iteration from metrics records, as a PNG (Agg, no display);
    drawn by the plotting module detection's curves.png uses too."""
    return plot_metric_curves(pretraining_curve_panels(records), path)


def _device():
    device, _ = resolve_device(f"cuda:{comm.get_local_rank()}")
    if device != "cpu":
        torch.cuda.set_device(device)
    return torch.device(device)


def _workers(cfg) -> int:
    """DATA.NUM_WORKERS, at most the CPUs each process of this machine gets."""
    workers, note = cap_workers(cfg.DATA.NUM_WORKERS, comm.get_local_size(), "DATA.NUM_WORKERS")
    if note:
        logger.info(note)
    return workers


class _Checkpoints(HookBase):
    """Save ``model_<iterations done>.pth`` every ``period`` iterations and at the last one,
    and ``model_final.pth`` after a run that finished (never after a failed one). The metrics
    ``writers`` write first: a run killed after a checkpoint lost none of the lines before it."""

    def __init__(self, checkpointer, period, writers=()):
        self.checkpointer, self.period, self.writers = checkpointer, period, writers

    def after_step(self):
        done = self.trainer.iter + 1
        if done % self.period == 0 or done == self.trainer.max_iter:
            for writer in self.writers:
                writer.write()
            self.checkpointer.save(f"model_{done:07d}", iteration=done)
            comm.synchronize()

    def after_train(self):
        if self.trainer.iter >= self.trainer.max_iter:
            self.checkpointer.save("model_final", iteration=self.trainer.max_iter)


class ClassificationTrainer(SimpleTrainer):
    """The classifier of ``cfg`` (a validated pretraining config), its data, optimizer and schedule,
    trained by ``run_step`` under detectron2's hooks, :class:`_Checkpoints` and the shared ones::

        trainer = ClassificationTrainer(cfg)
        trainer.resume_or_load(resume)   # builds the data stream from the resumed iteration
        metrics = trainer.train()
    """

    def __init__(self, cfg):
        validate_pretrain_cfg(cfg)
        self.cfg, s, world = cfg, cfg.SOLVER, comm.get_world_size()
        self.device = _device()
        self.num_workers = _workers(cfg)
        self.seed = cfg.SEED  # SeedEachIteration's
        torch.manual_seed(cfg.SEED)  # identical initial weights on every rank
        self.train_set, self.val_set = build_datasets(cfg)
        self.num_classes = cfg.MODEL.NUM_CLASSES or len(self.train_set.classes)
        if self.num_classes != len(self.train_set.classes):
            raise ConfigError(f"MODEL.NUM_CLASSES={self.num_classes} but {self.train_set.root} has "
                             f"{len(self.train_set.classes)} class folders; set it to 0 or fix the data")
        self.lengths = L = schedule_lengths(cfg, len(self.train_set), world)
        self.raw_model = build_classifier(cfg, self.num_classes)
        self.memory_format = torch.channels_last if s.CHANNELS_LAST else torch.contiguous_format
        self.raw_model.to(self.device, memory_format=self.memory_format)
        self.lr = s.BASE_LR * s.IMS_PER_BATCH / s.REFERENCE_BATCH  # linear scaling (Goyal et al. 2017)
        optimizer = build_optimizer(self.raw_model, self.lr, momentum=s.MOMENTUM, weight_decay=s.WEIGHT_DECAY,
                                    weight_decay_norm=s.WEIGHT_DECAY_NORM, nesterov=s.NESTEROV,
                                    impl=s.OPTIMIZER_IMPL, name=s.OPTIMIZER)
        self.scheduler = build_lr_scheduler(optimizer, L.max_iter, schedule=s.SCHEDULE, steps=L.steps,
                                            gamma=s.GAMMA, warmup_iters=L.warmup_iters,
                                            warmup_factor=s.WARMUP_FACTOR)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_mode(self.cfg) == "fp16")
        if world > 1 and self.device.type != "cuda" and cfg.MODEL.NORM == "SyncBN":
            raise ConfigError("MODEL.NORM = 'SyncBN' uses torch's SyncBatchNorm, which needs CUDA; "
                             "on CPU processes use MODEL.NORM BN (per-process statistics)")
        model = create_ddp_model(self.raw_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        super().__init__(torch.compile(model) if s.COMPILE else model, None, optimizer)
        self.checkpointer = SafeCheckpointer(
            self.raw_model, cfg.OUTPUT_DIR, max_to_keep=s.MAX_CHECKPOINTS_TO_KEEP, optimizer=optimizer,
            scheduler=self.scheduler, scaler=self.scaler)
        self.start_iter, self.max_iter = 0, L.max_iter
        self.final = {}
        # On a CPU each batch is written into the previous one's tensor: backward() has freed
        # the graph that held it by then (NormalizeBatch's reuse_output).
        self.normalize = NormalizeBatch(reuse_output=True).to(self.device)
        self._pending = []  # (iteration, loss, top-1 misses) still on the device: read with a lag

    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume``, restore ``OUTPUT_DIR/last_checkpoint`` (weights, optimizer, schedule,
        grad scaler) when it exists; then build the data stream from that iteration
        and the hooks."""
        out = Path(self.cfg.OUTPUT_DIR)
        if resume and self.checkpointer.has_checkpoint():
            path = Path(self.checkpointer.get_checkpoint_file())
            if not path.is_file():
                raise FileNotFoundError(f"{out / LAST_CHECKPOINT} names {path.name}, which does not exist in {out}")
            self.start_iter = int(self.checkpointer.load(str(path))["iteration"])
            logger.info("resumed from %s at iteration %d", path, self.start_iter)
        elif resume:
            logger.info("--resume: no checkpoint in %s, starting from scratch", out)
        if comm.is_main_process():
            out.mkdir(parents=True, exist_ok=True)
            self.checkpointer.remove_interrupted_saves()
            with atomic_write(out / "config.yaml", mode="w") as f:
                f.write(self.cfg.dump())
        comm.synchronize()
        L, d, s = self.lengths, self.cfg.DATA, self.cfg.SOLVER
        rank, world = comm.get_rank(), comm.get_world_size()
        loader = build_train_loader(
            self.train_set, L.micro_batch, L.samples_per_rank_epoch, seed=self.cfg.SEED, rank=rank,
            world_size=world, start=self.start_iter * L.samples_per_rank_step, num_workers=self.num_workers,
            persistent_workers=d.PERSISTENT_WORKERS, prefetch_factor=d.PREFETCH_FACTOR, timeout=d.TIMEOUT,
            collate_fn=MixCollate(self.num_classes, s.MIXUP_ALPHA, s.CUTMIX_ALPHA, seed=self.cfg.SEED))
        self.data_loader = iterate_loader(loader, self.train_set)  # names the sample a dead worker held
        self.val_loader = build_test_loader(
            self.val_set, self.cfg.TEST.IMS_PER_BATCH, rank=rank, world_size=world, num_workers=self.num_workers,
            persistent_workers=d.PERSISTENT_WORKERS, prefetch_factor=d.PREFETCH_FACTOR, timeout=d.TIMEOUT)
        writers = build_writers(out, L.max_iter, first_iter=self.start_iter + 1) if comm.is_main_process() else []
        # Evaluation before the writers (an iteration's line holds its evaluation) and the
        # checkpoint last (what it resumes from is on disk, metrics included).
        self.register_hooks([
            SeedEachIteration(),
            hooks.IterationTimer(),
            hooks.LRScheduler(),
            hooks.EvalHook(L.eval_period, self.test),
            hooks.PeriodicWriter(writers, s.LOG_PERIOD) if writers else None,
            _Checkpoints(self.checkpointer, L.checkpoint_period, [w for w in writers if isinstance(w, JSONWriter)]),
            PlotCurves(out, L.eval_period, lambda path: plot_curves(read_metrics_json(path), out / "curves.png")),
        ])

    def train(self) -> dict:
        """Train to ``SOLVER.MAX_ITER``, then write model_final.pth, the backbone file
        (backbone.safetensors/.json) and curves.png; returns the final evaluation."""
        logger.info("training %s for %d iterations (%d per epoch), %d images/step over %d process(es), lr %.4g",
                    type(self.raw_model).__name__, self.max_iter, self.lengths.iters_per_epoch,
                    self.cfg.SOLVER.IMS_PER_BATCH, comm.get_world_size(), self.lr)
        self._clock = [time.perf_counter(), self.start_iter]
        super().train(self.start_iter, self.max_iter)
        out, d = Path(self.cfg.OUTPUT_DIR), self.cfg.DATA
        if comm.is_main_process():
            save_backbone(self.raw_model, out / "backbone.safetensors", extra={"pretrain": {
                "data": str(Path(d.ROOT) / d.TRAIN_DIR), "classes": len(self.train_set.classes),
                "iterations": self.max_iter, **self.final}})
        comm.synchronize()
        if self.train_set.num_skipped:
            logger.warning("%d unreadable training image(s) were skipped (see warnings above)",
                           self.train_set.num_skipped)
        return self.final

    def run_step(self):
        """One optimizer step over ``SOLVER.GRAD_ACCUM_STEPS`` micro-batches (DDP gradient
        sync on the last one only), under autocast per ``SOLVER.AMP``; the step's loss and
        misses stay on the device until :meth:`_flush`."""
        s, accum = self.cfg.SOLVER, self.cfg.SOLVER.GRAD_ACCUM_STEPS
        self.storage.iter = done = self.iter + 1  # what this step's metrics are logged as
        loss_sum, miss_sum = torch.zeros(2, device=self.device)
        for micro in range(accum):
            images, targets, _ = next(self._data_loader_iter)
            # uint8 over the bus, then converted and normalised on the device (the
            # elementwise ops keep the memory format).
            images = self.normalize(images.to(self.device, non_blocking=True, memory_format=self.memory_format))
            targets = targets.to(self.device, non_blocking=True)
            last = comm.get_world_size() == 1 or micro == accum - 1
            with contextlib.nullcontext() if last else self.model.no_sync():
                with autocast(self.device, amp_mode(self.cfg)):
                    logits = self.model(images)
                loss = classification_loss(logits, targets, s.LABEL_SMOOTHING)
                self.scaler.scale(loss / accum).backward()
            hard = targets.argmax(1) if targets.dim() == 2 else targets
            loss_sum += loss.detach() / accum
            miss_sum += (logits.detach().argmax(1) != hard).sum()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._pending.append((self.iter, loss_sum, miss_sum))
        if done % s.LOG_PERIOD == 0 or done % self.lengths.checkpoint_period == 0 or done == self.max_iter:
            self._flush(done)

    def _flush(self, done):
        """Read the pending losses (the one host sync per log period), stop on a NaN/inf one,
        and put their means into the event storage."""
        world, L = comm.get_world_size(), self.lengths
        pending, self._pending = self._pending, []
        stats = torch.stack([torch.stack([loss, miss]) for _, loss, miss in pending]).double()
        if world > 1:
            torch.distributed.all_reduce(stats)
        stats = (stats / world).tolist()
        for (it, _, _), (loss, _) in zip(pending, stats):
            if not math.isfinite(loss):
                last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else None
                raise TrainingDivergedError(divergence_message(
                    f"loss is {loss} at iteration {it + 1} (cross-entropy). ", it + 1, {"loss": loss}, last,
                    "Lower SOLVER.BASE_LR, add SOLVER.WARMUP_EPOCHS, or try SOLVER.AMP.ENABLED False."))
        now = time.perf_counter()
        sec_per_iter = (now - self._clock[0]) / max(done - self._clock[1], 1)
        self._clock = [now, done]
        self.storage.put_scalars(
            epoch=done / L.iters_per_epoch, loss=sum(x[0] for x in stats) / len(stats),
            train_top1_err=100.0 * sum(x[1] for x in stats) / (len(stats) * L.samples_per_rank_step),
            sec_per_iter=sec_per_iter, images_per_sec=self.cfg.SOLVER.IMS_PER_BATCH / sec_per_iter,
            skipped_images=self.train_set.num_skipped, smoothing_hint=False)

    def test(self) -> dict:
        """Evaluate on the validation set: 1-crop during training; after the last iteration
        also 10-crop (``TEST.TEN_CROP``) and the image count, kept as :attr:`final`."""
        if self.iter == self.max_iter - 1:
            return {}  # EvalHook's after_train after a run that failed in its last iteration
        final = self.iter >= self.max_iter
        res = evaluate_val(self.cfg, self.raw_model, self.val_loader, self.device, final=final)
        self.final = res if final else self.final
        return res


def evaluate_val(cfg, model, val_loader, device, final=True) -> dict:
    """1-crop top-1/top-5 error on ``val_loader``; ``final`` adds the image count and, with
    ``TEST.TEN_CROP``, the 10-crop errors, and logs them."""
    def errors(loader, prefix):
        res = evaluate(model, loader, device=device, amp=amp_mode(cfg), channels_last=cfg.SOLVER.CHANNELS_LAST)
        return {f"{prefix}top1_err": res["top1_err"], f"{prefix}top5_err": res["top5_err"]}, res["num_images"]

    metrics, count = errors(val_loader, "val_")
    if final:
        metrics["val_images"] = count
        if cfg.TEST.TEN_CROP:
            _, ten = build_datasets(cfg, train=False, ten_crop=True)
            metrics.update(errors(build_test_loader(
                ten, max(1, cfg.TEST.IMS_PER_BATCH // 10), rank=comm.get_rank(), world_size=comm.get_world_size(),
                num_workers=_workers(cfg), timeout=cfg.DATA.TIMEOUT), "val_10crop_")[0])
        logger.info("final evaluation: %s", json.dumps(metrics))
    return metrics


def train(cfg, resume: bool = False) -> dict:
    """Pretrain the classifier described by ``cfg`` (call in every process; see
    :func:`launch_from_args`). With ``resume``, continue from ``OUTPUT_DIR/last_checkpoint``
    when it exists. Returns the final metrics."""
    trainer = ClassificationTrainer(cfg)
    trainer.resume_or_load(resume)
    return trainer.train()


def evaluate_only(cfg, weights: str = "") -> dict:
    """Evaluate a trained classifier (1-crop, plus 10-crop when ``TEST.TEN_CROP``): ``weights``
    is a pretraining checkpoint or a full state-dict file; empty means MODEL.WEIGHTS, then
    OUTPUT_DIR's last checkpoint. Returns the metrics."""
    validate_pretrain_cfg(cfg)
    device = _device()
    _, val_set = build_datasets(cfg, train=False)
    model = build_classifier(cfg, cfg.MODEL.NUM_CLASSES or len(val_set.classes)).to(device)
    checkpointer = SafeCheckpointer(model, cfg.OUTPUT_DIR)
    path = weights or cfg.MODEL.WEIGHTS or (checkpointer.has_checkpoint() and checkpointer.get_checkpoint_file())
    if not path:
        raise FileNotFoundError(f"--eval-only: no weights given and no {LAST_CHECKPOINT} in {cfg.OUTPUT_DIR}")
    checkpointer.load(str(path))  # copied into the parameters, already on the device
    d = cfg.DATA
    val_loader = build_test_loader(val_set, cfg.TEST.IMS_PER_BATCH, rank=comm.get_rank(),
                                   world_size=comm.get_world_size(), num_workers=_workers(cfg), timeout=d.TIMEOUT)
    return evaluate_val(cfg, model, val_loader, device)


def main(args) -> dict:
    """Run in every process: set up logging, then train (or with ``--eval-only`` evaluate) and
    print the final metrics."""
    cfg = load_pretrain_cfg(args.config_file, args.opts)
    for name, abbrev in (("resnet_det", None), ("detectron2", "d2")):
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name, abbrev_name=abbrev)
    result = evaluate_only(cfg) if args.eval_only else train(cfg, resume=args.resume)
    if comm.is_main_process():
        print(json.dumps(result, indent=2))
    return result


def launch_from_args(args):
    """Validate the config in this process (before any worker starts or any file is written),
    then run :func:`main` in ``--num-gpus`` processes per machine through detectron2's ``launch``."""
    load_pretrain_cfg(args.config_file, args.opts)
    return launch_main(main, args)


def command_line(argv=None, doc=None) -> int:
    """``resnet-det-pretrain`` (tools/pretrain_cls.py): detectron2's training flags, then pretrain or
    evaluate; the exit status (2 with the message of an expected error)."""
    silence_known_warnings()
    return run_cli(lambda: launch_from_args(training_argument_parser(doc or __doc__).parse_args(argv)))
