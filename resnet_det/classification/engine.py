"""The pretraining loop: train, evaluate (1-crop / 10-crop), checkpoint, resume, export.

Library entry points take plain arguments (``evaluate``, ``save_checkpoint``, ...) except
:func:`train` and :func:`evaluate_only`, which read a validated config. Host syncs happen once
per ``SOLVER.LOG_PERIOD`` (losses are kept on the device and read with a lag), at checkpoints
and at evaluations, never per step.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.utils import comm

from ..checkpoint import (
    WeightsFileError,
    atomic_write,
    load_state_dict_checked,
    load_state_dict_file,
    save_backbone,
)
from ..config import ConfigError, resnet_options
from ..models import build_resnet, build_vgg16
from .config import amp_mode, validate_pretrain_cfg
from .data import ClassTreeError, ImageFolderDataset, build_test_loader, build_train_loader, iterate_loader
from .solver import build_lr_scheduler, build_optimizer, scaled_lr
from .transforms import MixCollate, NormalizeBatch, build_eval_transform, build_train_transform

__all__ = [
    "DivergenceError",
    "ScheduleLengths",
    "build_classifier",
    "build_datasets",
    "schedule_lengths",
    "classification_loss",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "last_checkpoint",
    "prune_checkpoints",
    "train",
    "evaluate_only",
    "plot_curves",
]

logger = logging.getLogger(__name__)
LAST_CHECKPOINT = "last_checkpoint"
# Test hook (kill-during-save tests): seconds to sleep after a checkpoint's bytes are written to
# its temporary file and before the rename that publishes it.
FAULT_SLEEP_IN_SAVE = "RESNET_DET_FAULT_SLEEP_IN_SAVE"


class DivergenceError(FloatingPointError):
    """The training loss (or the weights) became NaN/inf."""


def build_classifier(cfg, num_classes: int):
    """The network named by ``cfg.MODEL`` with a ``num_classes``-way classifier."""
    if cfg.MODEL.ARCH == "vgg16":
        return build_vgg16(num_classes)
    return build_resnet(num_classes=num_classes, **resnet_options(cfg))


def build_datasets(cfg, *, train=True, ten_crop=False):
    """``(train_set or None, val_set)`` from ``cfg.DATA``; checks both class trees up front."""
    d = cfg.DATA
    root = Path(d.ROOT)
    common = dict(strict=d.STRICT, seed=cfg.SEED, max_pixels=d.MAX_IMAGE_PIXELS)
    train_set = None
    classes = None
    if train:
        tf = build_train_transform(d.RECIPE, d.CROP_SIZE, tuple(d.RESIZE_RANGE), d.COLOR_JITTER)
        # The paper recipe resizes the short side to at most RESIZE_RANGE[1]: the JPEG
        # decoder may downscale big photos to that size for free.
        draft = d.RESIZE_RANGE[1] if d.RECIPE == "paper" else None
        train_set = ImageFolderDataset(root / d.TRAIN_DIR, tf, draft_short_side=draft, **common)
        classes = train_set.classes
        if len(classes) < 2:
            # One class: every label is the same, training "reaches" 0% error and learns nothing.
            raise ClassTreeError(
                f"{train_set.root} holds {len(classes)} class folder ({classes[0]}); "
                "classification needs at least two classes (one folder per class, e.g. crops "
                "of each object class, or an ImageNet-layout tree)"
            )
    val_tf = build_eval_transform(d.CROP_SIZE, d.TEST_RESIZE, ten_crop=ten_crop)
    val_set = ImageFolderDataset(root / d.VAL_DIR, val_tf, classes=classes,
                                 draft_short_side=d.TEST_RESIZE, **common)
    return train_set, val_set


class ScheduleLengths(dict):
    """Batch and schedule sizes in samples/iterations (a dict with attribute access)."""

    __getattr__ = dict.__getitem__


def schedule_lengths(cfg, dataset_size: int, world_size: int) -> ScheduleLengths:
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
    return ScheduleLengths(
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


def _autocast(device, amp):
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@torch.no_grad()
def evaluate(model, loader, *, device=None, amp="off", channels_last=False) -> dict:
    """Top-1/top-5 error (%) of ``model`` over ``loader``'s ``(images, labels, ...)`` batches of
    uint8 (0..255) or float (0..1) images, normalised here on ``device``. 5-D batches
    (``B x crops x C x H x W``, e.g. 10-crop) average the crops' softmax scores, as the paper
    does. Counts are summed over processes when distributed."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    normalize = NormalizeBatch(reuse_output=True).to(device)  # each batch is done with in-loop
    counts = torch.zeros(3, dtype=torch.float64, device=device)  # top-1 hits, top-5 hits, images
    for images, labels, *_ in loader:
        images = normalize(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        crops = images.shape[1] if images.dim() == 5 else 1
        if images.dim() == 5:
            images = images.flatten(0, 1)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            logits = model(images)
        probs = logits.float().softmax(-1).view(labels.shape[0], crops, -1).mean(1)
        top = probs.topk(min(5, probs.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        counts += torch.stack([hits[:, 0].sum(), hits.any(1).sum(), torch.tensor(labels.shape[0], device=device)]).double()
    if comm.get_world_size() > 1:
        torch.distributed.all_reduce(counts)
    model.train(was_training)
    top1, top5, n = counts.tolist()
    if n == 0:
        raise ValueError("evaluation loader yielded no images")
    # Rounded so that e.g. 66.0 is not logged as 65.99999999999999.
    return {"top1_err": round(100.0 * (n - top1) / n, 6), "top5_err": round(100.0 * (n - top5) / n, 6),
            "num_images": int(n)}


# ---------------------------------------------------------------- checkpoints

def _rng_state() -> dict:
    # Plain types and tensors only, so checkpoints load with torch.load(weights_only=True).
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
    }


def _set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))


def save_checkpoint(output_dir, name, *, model, optimizer=None, scheduler=None, scaler=None,
                    iteration=0, extra=None) -> Path:
    """Write ``output_dir/name`` (model, optimizer, scheduler, grad scaler, iteration, RNG
    states) atomically, then point ``output_dir/last_checkpoint`` at it (atomically too), so a
    kill at any moment leaves the previous checkpoint usable."""
    output_dir = Path(output_dir)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "iteration": int(iteration),
        "rng": _rng_state(),
        "extra": extra or {},
    }
    path = output_dir / name
    with atomic_write(path) as f:
        torch.save(state, f)
        if os.environ.get(FAULT_SLEEP_IN_SAVE):
            f.flush()
            time.sleep(float(os.environ[FAULT_SLEEP_IN_SAVE]))
    with atomic_write(output_dir / LAST_CHECKPOINT, mode="w") as f:
        f.write(name)
    return path


def prune_checkpoints(output_dir, keep: int) -> list:
    """Delete all but the ``keep`` newest periodic checkpoints (``model_<iteration>.pth``) of
    ``output_dir``; never the one ``last_checkpoint`` names, nor ``model_final.pth``. ``keep``
    0 keeps all. Returns the deleted paths."""
    if keep <= 0:
        return []
    current = last_checkpoint(output_dir)
    periodic = sorted(p for p in Path(output_dir).glob("model_*.pth") if p.stem[6:].isdigit())
    doomed = [p for p in periodic[:-keep] if current is None or p.name != current.name]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def last_checkpoint(output_dir) -> Path | None:
    """The checkpoint ``output_dir/last_checkpoint`` points at, or None when there is none."""
    pointer = Path(output_dir) / LAST_CHECKPOINT
    if not pointer.is_file():
        return None
    path = Path(output_dir) / pointer.read_text().strip()
    if not path.is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which does not exist in {output_dir}")
    return path


def load_checkpoint(path, *, model, optimizer=None, scheduler=None, scaler=None, restore_rng=True) -> int:
    """Restore what :func:`save_checkpoint` wrote (``weights_only=True``: no code runs);
    returns the iteration to continue from."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsFileError(f"{path}: not a readable pretraining checkpoint ({e})") from e
    if not isinstance(state, dict) or "model" not in state or "iteration" not in state:
        raise WeightsFileError(f"{path}: not a pretraining checkpoint (expected keys 'model', 'iteration')")
    load_state_dict_checked(model, state["model"], source=str(path))
    if optimizer is not None and state["optimizer"]:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"]:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    if restore_rng:
        _set_rng_state(state["rng"])
    return int(state["iteration"])


# ---------------------------------------------------------------- outputs

def plot_curves(records, path) -> Path:
    """Train/val top-1 error vs iteration from metrics records, as a PNG (Agg, no display);
    drawn by the plotting module detection's curves.png uses too."""
    from ..analysis.plotting import plot_metric_curves, pretraining_curve_panels

    return plot_metric_curves(pretraining_curve_panels(records), path)


class _Outputs:
    """Rank 0's files: metrics.json (json lines), tensorboard events, curves.png."""

    def __init__(self, output_dir, start_iter):
        self.dir = Path(output_dir)
        self.main = comm.is_main_process()
        self.records = []
        if not self.main:
            return
        from torch.utils.tensorboard import SummaryWriter

        metrics = self.dir / "metrics.json"
        if metrics.is_file():
            # Lines logged after the checkpoint we resume from are replayed; drop them.
            for line in metrics.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("iteration", 0) <= start_iter:
                        self.records.append(rec)
        with atomic_write(metrics, mode="w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.records)
        self.tb = SummaryWriter(str(self.dir), purge_step=start_iter if start_iter else None)

    def write(self, record):
        if not self.main:
            return
        self.records.append(record)
        with open(self.dir / "metrics.json", "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k != "iteration" and isinstance(v, (int, float)):
                self.tb.add_scalar(k, v, record["iteration"])

    def close(self):
        if self.main:
            self.tb.close()
            plot_curves(self.records, self.dir / "curves.png")


# ---------------------------------------------------------------- training

def _device():
    if torch.cuda.is_available():
        torch.cuda.set_device(comm.get_local_rank())
        return torch.device("cuda", comm.get_local_rank())
    return torch.device("cpu")


def _check_finite_weights(model, iteration):
    flags = torch.stack([p.detach().isfinite().all() for p in model.parameters()])
    if not bool(flags.all()):
        raise DivergenceError(f"weights became NaN/inf by iteration {iteration}; not saving them")


def train(cfg, resume: bool = False, on_batch=None) -> dict:
    """Pretrain the classifier described by ``cfg`` (call in every process; see
    ``tools/pretrain_cls.py`` for launching). With ``resume``, continue from
    ``OUTPUT_DIR/last_checkpoint`` when it exists. ``on_batch(iteration, indices)`` is called
    for every micro-batch (tests record what each rank sees). Returns the final metrics."""
    validate_pretrain_cfg(cfg)
    out = Path(cfg.OUTPUT_DIR)
    rank, world = comm.get_rank(), comm.get_world_size()
    device = _device()
    s = cfg.SOLVER
    torch.manual_seed(cfg.SEED)  # identical initial weights on every rank

    train_set, val_set = build_datasets(cfg)
    num_classes = cfg.MODEL.NUM_CLASSES or len(train_set.classes)
    if num_classes != len(train_set.classes):
        raise ConfigError(f"MODEL.NUM_CLASSES={num_classes} but {train_set.root} has "
                         f"{len(train_set.classes)} class folders; set it to 0 or fix the data")
    L = schedule_lengths(cfg, len(train_set), world)
    model = build_classifier(cfg, num_classes)
    memory_format = torch.channels_last if s.CHANNELS_LAST else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    lr = scaled_lr(s.BASE_LR, s.IMS_PER_BATCH, s.REFERENCE_BATCH)
    optimizer = build_optimizer(model, lr, momentum=s.MOMENTUM, weight_decay=s.WEIGHT_DECAY,
                                weight_decay_norm=s.WEIGHT_DECAY_NORM, nesterov=s.NESTEROV,
                                impl=s.OPTIMIZER_IMPL, name=s.OPTIMIZER)
    scheduler = build_lr_scheduler(optimizer, L.max_iter, schedule=s.SCHEDULE, steps=L.steps,
                                   gamma=s.GAMMA, warmup_iters=L.warmup_iters,
                                   warmup_factor=s.WARMUP_FACTOR)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_mode(cfg) == "fp16")

    start_iter = 0
    ckpt = last_checkpoint(out) if resume else None
    if ckpt is not None:
        start_iter = load_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        logger.info("resumed from %s at iteration %d", ckpt, start_iter)
    elif resume:
        logger.info("--resume: no checkpoint in %s, starting from scratch", out)
    if comm.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # temp files of saves that a kill interrupted
            stale.unlink(missing_ok=True)
        with atomic_write(out / "config.yaml", mode="w") as f:
            f.write(cfg.dump())
    comm.synchronize()

    raw_model = model
    if world > 1 and device.type != "cuda" and cfg.MODEL.NORM == "SyncBN":
        raise ConfigError("MODEL.NORM = 'SyncBN' uses torch's SyncBatchNorm, which needs CUDA; "
                         "on CPU processes use MODEL.NORM BN (per-process statistics)")
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if s.COMPILE:
        model = torch.compile(model)

    d = cfg.DATA
    loader = build_train_loader(
        train_set, L.micro_batch, L.samples_per_rank_epoch, seed=cfg.SEED, rank=rank,
        world_size=world, start=start_iter * L.samples_per_rank_step, num_workers=d.NUM_WORKERS,
        persistent_workers=d.PERSISTENT_WORKERS, prefetch_factor=d.PREFETCH_FACTOR,
        timeout=d.TIMEOUT,
        collate_fn=MixCollate(num_classes, s.MIXUP_ALPHA, s.CUTMIX_ALPHA, seed=cfg.SEED))
    val_loader = build_test_loader(val_set, cfg.TEST.IMS_PER_BATCH, rank=rank, world_size=world,
                                   num_workers=d.NUM_WORKERS, persistent_workers=d.PERSISTENT_WORKERS,
                                   prefetch_factor=d.PREFETCH_FACTOR, timeout=d.TIMEOUT)
    outputs = _Outputs(out, start_iter)
    bar = None
    if comm.is_main_process():
        from tqdm import tqdm

        bar = tqdm(total=L.max_iter, initial=start_iter, desc="pretrain", dynamic_ncols=True)
    logger.info("training %s for %d iterations (%d per epoch), %d images/step over %d process(es), lr %.4g",
                type(raw_model).__name__, L.max_iter, L.iters_per_epoch, s.IMS_PER_BATCH, world, lr)

    pending = []  # (iteration, loss, top-1 misses) still on the device: read with a lag
    last_good = ckpt
    clock = [time.perf_counter(), start_iter]

    def flush(iteration):
        if not pending:
            return
        stats = torch.stack([torch.stack([l, e]) for _, l, e in pending]).double()
        if world > 1:
            torch.distributed.all_reduce(stats)
        stats = (stats / world).tolist()  # the one host sync per log period
        its = [i for i, _, _ in pending]
        pending.clear()
        for it, (loss, _) in zip(its, stats):
            if not math.isfinite(loss):
                raise DivergenceError(
                    f"loss is {loss} at iteration {it + 1} (loss terms: cross-entropy={loss}); "
                    f"stopping. Last good checkpoint: {last_good or 'none written yet'}. Lower "
                    f"SOLVER.BASE_LR, add SOLVER.WARMUP_EPOCHS, or try SOLVER.AMP.ENABLED False.")
        now = time.perf_counter()
        sec_per_iter = (now - clock[0]) / max(iteration - clock[1], 1)
        clock[:] = [now, iteration]
        record = {
            "iteration": iteration,
            "epoch": iteration / L.iters_per_epoch,
            "loss": sum(x[0] for x in stats) / len(stats),
            "train_top1_err": 100.0 * sum(x[1] for x in stats) / (len(stats) * L.samples_per_rank_step),
            "lr": optimizer.param_groups[0]["lr"],
            "sec_per_iter": sec_per_iter,
            "images_per_sec": s.IMS_PER_BATCH / sec_per_iter,
            "skipped_images": train_set.num_skipped,
        }
        outputs.write(record)
        if bar is not None:
            bar.set_postfix(loss=f"{record['loss']:.3f}", err=f"{record['train_top1_err']:.1f}%",
                            lr=f"{record['lr']:.3g}", refresh=False)
        logger.info("iter %d/%d loss %.4f train top-1 err %.2f%% lr %.4g %.3fs/iter",
                    iteration, L.max_iter, record["loss"], record["train_top1_err"], record["lr"], sec_per_iter)

    model.train()
    batches = iterate_loader(loader, train_set)
    autocast = _autocast(device, amp_mode(cfg))
    accum = s.GRAD_ACCUM_STEPS
    # On a CPU each batch is written into the previous one's tensor: backward() has freed the
    # graph that held it by then (NormalizeBatch's reuse_output).
    normalize = NormalizeBatch(reuse_output=True).to(device)
    try:
        for it in range(start_iter, L.max_iter):
            loss_sum = torch.zeros((), device=device)
            miss_sum = torch.zeros((), device=device)
            for micro in range(accum):
                images, targets, indices = next(batches)
                if on_batch is not None:
                    on_batch(it, indices)
                # uint8 over the bus, then converted and normalised on the device (the
                # elementwise ops keep the memory format).
                images = normalize(images.to(device, non_blocking=True, memory_format=memory_format))
                targets = targets.to(device, non_blocking=True)
                sync = contextlib.nullcontext() if world == 1 or micro == accum - 1 else model.no_sync()
                with sync:
                    with autocast:
                        logits = model(images)
                    loss = classification_loss(logits, targets, s.LABEL_SMOOTHING)
                    scaler.scale(loss / accum).backward()
                hard = targets.argmax(1) if targets.dim() == 2 else targets
                loss_sum += loss.detach() / accum
                miss_sum += (logits.detach().argmax(1) != hard).sum()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            pending.append((it, loss_sum, miss_sum))
            done = it + 1
            if bar is not None:
                bar.update(1)
            is_last = done == L.max_iter
            save_now = done % L.checkpoint_period == 0 or is_last
            if done % s.LOG_PERIOD == 0 or save_now or is_last:
                flush(done)
            if save_now:
                _check_finite_weights(raw_model, done)
                if comm.is_main_process():
                    last_good = save_checkpoint(
                        out, f"model_{done:07d}.pth", model=raw_model, optimizer=optimizer,
                        scheduler=scheduler, scaler=scaler, iteration=done)
                    prune_checkpoints(out, s.MAX_CHECKPOINTS_TO_KEEP)
                comm.synchronize()
            if done % L.eval_period == 0 and not is_last:
                res = evaluate(raw_model, val_loader, device=device, amp=amp_mode(cfg), channels_last=s.CHANNELS_LAST)
                outputs.write({"iteration": done, "val_top1_err": res["top1_err"], "val_top5_err": res["top5_err"]})
    finally:
        if bar is not None:
            bar.close()

    final = _final_evaluation(cfg, raw_model, val_loader, device, L.max_iter, outputs)
    if comm.is_main_process():
        save_checkpoint(out, "model_final.pth", model=raw_model, iteration=L.max_iter)
        save_backbone(raw_model, out / "backbone.safetensors", extra={"pretrain": {
            "data": str(Path(d.ROOT) / d.TRAIN_DIR), "classes": len(train_set.classes),
            "iterations": L.max_iter, **final}})
    outputs.close()
    comm.synchronize()
    if train_set.num_skipped:
        logger.warning("%d unreadable training image(s) were skipped (see warnings above)", train_set.num_skipped)
    return final


def _final_evaluation(cfg, model, val_loader, device, iteration, outputs):
    s = cfg.SOLVER
    res = evaluate(model, val_loader, device=device, amp=amp_mode(cfg), channels_last=s.CHANNELS_LAST)
    final = {"val_top1_err": res["top1_err"], "val_top5_err": res["top5_err"], "val_images": res["num_images"]}
    if cfg.TEST.TEN_CROP:
        _, ten = build_datasets(cfg, train=False, ten_crop=True)
        ten_loader = build_test_loader(ten, max(1, cfg.TEST.IMS_PER_BATCH // 10), rank=comm.get_rank(),
                                       world_size=comm.get_world_size(), num_workers=cfg.DATA.NUM_WORKERS,
                                       timeout=cfg.DATA.TIMEOUT)
        r10 = evaluate(model, ten_loader, device=device, amp=amp_mode(cfg), channels_last=s.CHANNELS_LAST)
        final.update(val_10crop_top1_err=r10["top1_err"], val_10crop_top5_err=r10["top5_err"])
    outputs.write({"iteration": iteration, **final})
    logger.info("final evaluation: %s", json.dumps(final))
    return final


def evaluate_only(cfg, weights: str = "") -> dict:
    """Evaluate a trained classifier (1-crop, plus 10-crop when ``TEST.TEN_CROP``): ``weights``
    is a pretraining checkpoint or a full state-dict file; empty means OUTPUT_DIR's last
    checkpoint. Returns the metrics (also printed by the CLI)."""
    validate_pretrain_cfg(cfg)
    device = _device()
    _, val_set = build_datasets(cfg, train=False)
    model = build_classifier(cfg, cfg.MODEL.NUM_CLASSES or len(val_set.classes)).to(device)
    weights = weights or cfg.MODEL.WEIGHTS
    path = Path(weights) if weights else last_checkpoint(cfg.OUTPUT_DIR)
    if path is None:
        raise FileNotFoundError(f"--eval-only: no weights given and no {LAST_CHECKPOINT} in {cfg.OUTPUT_DIR}")
    if path.suffix == ".pth":
        load_checkpoint(path, model=model, restore_rng=False)
    else:
        load_state_dict_checked(model, load_state_dict_file(path), source=str(path))
    model.to(device)
    d = cfg.DATA
    val_loader = build_test_loader(val_set, cfg.TEST.IMS_PER_BATCH, rank=comm.get_rank(),
                                   world_size=comm.get_world_size(), num_workers=d.NUM_WORKERS, timeout=d.TIMEOUT)

    class _NoFiles:
        def write(self, record):
            pass

    return _final_evaluation(cfg, model, val_loader, device, 0, _NoFiles())
