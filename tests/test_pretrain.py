"""Classification pretraining: config, sampler, schedules, training outputs, resume, failures."""
import json
import math
import os
import shutil
import signal

import pytest
import torch

from projects.toy_data import TOY_CLASSES
from resnet_det.checkpoint import (
    SafeCheckpointer,
    load_state_dict_checked,
    load_state_dict_file,
    prune_checkpoints,
    read_safetensors_metadata,
)
from resnet_det.config import load_pretrain_cfg
from resnet_det.data import imagenet as cls_data
from resnet_det.data.imagenet import DataLoaderWorkerError, build_train_loader, iterate_loader
from resnet_det.data.samplers import TrainSampler
from resnet_det.engine import classification as engine
from resnet_det.engine.classification import build_datasets, evaluate_only, train
from resnet_det.engine.hooks import TrainingDivergedError
from resnet_det.engine.solver import build_lr_scheduler
from resnet_det.evaluation.accuracy import evaluate
from resnet_det.models import build_model, build_resnet

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain")


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny convolutions gain nothing from a second thread, and on a shared 2-core machine
    # OpenMP spin-waiting makes them several times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(root, out, *extra):
    """ResNet-18 on 24 px crops, 8 images/step, a handful of iterations: seconds on a CPU."""
    opts = [
        "DATA.ROOT", root, "OUTPUT_DIR", str(out), "MODEL.DEPTH", "18",
        "DATA.CROP_SIZE", "24", "DATA.RESIZE_RANGE", "[24, 32]", "DATA.TEST_RESIZE", "24",
        "DATA.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "8", "SOLVER.MAX_ITER", "4",
        "SOLVER.STEP_EPOCHS", "[2]", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.LOG_PERIOD", "1",
        "TEST.EVAL_PERIOD", "2", "TEST.IMS_PER_BATCH", "10", *extra,
    ]
    return load_pretrain_cfg(os.path.join(CONFIGS, "toy_resnet18.yaml"), opts)


# ---------------------------------------------------------------- config

def test_toy_config_inherits_base_and_overrides():
    cfg = load_pretrain_cfg(os.path.join(CONFIGS, "toy_resnet18.yaml"))
    assert cfg.SOLVER.MOMENTUM == 0.9 and cfg.SOLVER.WEIGHT_DECAY == 1e-4  # from _BASE_
    assert cfg.MODEL.DEPTH == 18 and cfg.DATA.CROP_SIZE == 32  # overridden
    assert isinstance(cfg.SOLVER.EPOCHS, float)  # "EPOCHS: 16" accepted for a float key
    paper = load_pretrain_cfg(os.path.join(CONFIGS, "resnet101_imagenet.yaml"))
    assert (paper.MODEL.DEPTH, tuple(paper.DATA.RESIZE_RANGE), paper.DATA.CROP_SIZE) == (101, (256, 480), 224)


@pytest.mark.parametrize(
    "opts, pattern",
    [
        (["SOLVER.BASE_LR", "-0.1"], r"SOLVER.BASE_LR = -0.1; allowed: a number > 0"),
        (["MODEL.DEPTH", "77"], r"MODEL.DEPTH = 77; allowed: 18 \| 34 \| 50 \| 101 \| 152"),
        (["MODEL.SHORTCUT", "D"], r"MODEL.SHORTCUT = 'D'; allowed: A \| B \| C"),
        (["MODEL.NORM", "LN"], r"MODEL.NORM = 'LN'; allowed: BN"),
        (["SOLVER.SCHEDULE", "poly"], r"SOLVER.SCHEDULE = 'poly'; allowed: step \| cosine"),
        (["SOLVER.AMP.PRECISION", "fp8"], r"SOLVER.AMP.PRECISION = 'fp8'; allowed: fp16 \| bf16"),
        (["SOLVER.OPTIMIZER", "Adam"], r"SOLVER.OPTIMIZER = 'Adam'; allowed: SGD \| AdamW"),
        (["DATA.RESIZE_RANGE", "[480, 256]"], r"DATA.RESIZE_RANGE"),
        (["SOLVER.STEP_EPOCHS", "[60, 30]"], r"SOLVER.STEP_EPOCHS"),
        (["SOLVER.IMS_PER_BATCH", "30", "SOLVER.GRAD_ACCUM_STEPS", "4"], r"multiple of SOLVER.GRAD_ACCUM_STEPS"),
    ],
)
def test_bad_values_fail_naming_key_and_allowed(opts, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_pretrain_cfg("", opts)


def test_typo_and_wrong_type_fail_naming_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    base = os.path.abspath(os.path.join(CONFIGS, "Base-Pretrain.yaml"))
    bad.write_text(f"_BASE_: {base}\nSOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(KeyError, match=r"bad.yaml.*SOLVER.BASE_LRR"):
        load_pretrain_cfg(str(bad))
    with pytest.raises(ValueError, match=r"SOLVER.BASE_LR"):
        load_pretrain_cfg("", ["SOLVER.BASE_LR", "fast"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_pretrain_cfg(str(tmp_path / "nope.yaml"))


def test_optimizer_choice_builds_sgd_or_adamw():
    from resnet_det.engine.solver import build_optimizer

    model = build_resnet(18, 5, norm="GN")
    sgd = build_optimizer(model, 0.1, momentum=0.8)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.8
    adamw = build_optimizer(model, 1e-3, momentum=0.8, weight_decay=0.05, weight_decay_norm=0.0, name="AdamW")
    assert type(adamw) is torch.optim.AdamW
    assert {g["betas"] for g in adamw.param_groups} == {(0.8, 0.999)}
    assert {g["weight_decay"] for g in adamw.param_groups} == {0.05, 0.0}  # norm layers apart
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER 'Adam'"):
        build_optimizer(model, 1e-3, name="Adam")


# ---------------------------------------------------------------- sampler, schedules

def test_sampler_ranks_disjoint_cover_and_resume_skips():
    n, per_epoch = 23, 10  # 23 samples, 2 ranks: 12 per rank after padding, 10 used (whole steps)
    ranks = [TrainSampler(n, per_epoch, seed=3, rank=r, world_size=2) for r in range(2)]
    for epoch in range(3):
        a, b = (s.epoch_indices(epoch) for s in ranks)
        assert len(a) == len(b) == per_epoch and not set(a) & set(b)
    full = [TrainSampler(n, 12, seed=3, rank=r, world_size=2).epoch_indices(0) for r in range(2)]
    assert set(full[0]) | set(full[1]) == set(range(n))  # padding repeats, never drops
    assert ranks[0].epoch_indices(0) != ranks[0].epoch_indices(1)  # reshuffled per epoch
    stream = iter(ranks[0])
    first = [next(stream) for _ in range(27)]
    resumed = iter(TrainSampler(n, per_epoch, seed=3, rank=0, world_size=2, start=13))
    assert [next(resumed) for _ in range(14)] == first[13:]


def test_lr_schedule_warmup_steps_and_cosine():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.4)
    sched = build_lr_scheduler(opt, 100, schedule="step", steps=[50, 80], gamma=0.1, warmup_iters=10, warmup_factor=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.04) and lrs[5] == pytest.approx(0.04 + 0.36 * 0.5)
    assert lrs[20] == pytest.approx(0.4) and lrs[60] == pytest.approx(0.04) and lrs[90] == pytest.approx(0.004)
    opt = torch.optim.SGD([p], lr=0.4)
    sched = build_lr_scheduler(opt, 100, schedule="cosine")
    for _ in range(50):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)


def test_augmentation_same_for_any_worker_count(toy_cls_root):
    cfg = tiny_cfg(toy_cls_root, "unused")
    train_set, _ = build_datasets(cfg)
    batches = {}
    for workers in (0, 2):
        loader = build_train_loader(train_set, 4, 40, seed=1, num_workers=workers, persistent_workers=False)
        it = iter(loader)
        batches[workers] = [next(it) for _ in range(3)]
    for (x0, y0, i0), (x2, y2, i2) in zip(batches[0], batches[2]):
        assert torch.equal(i0, i2) and torch.equal(y0, y2) and torch.equal(x0, x2)
    x, _, _ = train_set[(5, 0)]
    assert not torch.equal(x, train_set[(5, 1)][0])  # a new epoch draws new augmentation


def test_evaluate_top1_top5_and_ten_crop_averaging():
    class Fixed(torch.nn.Module):
        """Logits = the image's first channel per class slot (6 classes)."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def forward(self, x):
            self.seen.append(x)
            return x[:, 0, 0, :6]

    # uint8 batches, as the loaders yield them: evaluate normalises them.
    rows = torch.tensor([[6, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6], [1, 6, 2, 3, 4, 5]], dtype=torch.uint8) * 40
    images = rows[:, None, None, :].expand(3, 3, 6, 6).clone()
    model = Fixed()
    evaluate(model, [(images, torch.zeros(3, dtype=torch.long))])
    assert model.seen[0].dtype == torch.float32
    assert model.seen[0][0, 0, 0, 0].item() == pytest.approx((240 / 255 - 0.485) / 0.229)
    labels = torch.tensor([0, 0, 5])  # hit top-1 / outside top-5 / 2nd -> top-5 only
    res = evaluate(Fixed(), [(images, labels)])
    assert res["top1_err"] == pytest.approx(100 * 2 / 3) and res["top5_err"] == pytest.approx(100 / 3)
    # Two crops per image whose scores disagree: averaging the softmax decides.
    crops = torch.stack([images, images.flip(-1)], 1)  # B x 2 x C x H x W
    res10 = evaluate(Fixed(), [(crops, labels)])
    assert res10["num_images"] == 3


# ---------------------------------------------------------------- training runs

def test_train_outputs_backbone_and_eval_only(toy_cls_root, tmp_path):
    cfg = tiny_cfg(toy_cls_root, tmp_path)
    final = train(cfg)
    for name in ("config.yaml", "metrics.json", "curves.png", "model_0000002.pth", "model_0000004.pth",
                 "model_final.pth", "backbone.safetensors", "backbone.json", "last_checkpoint"):
        assert (tmp_path / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
    assert load_pretrain_cfg(str(tmp_path / "config.yaml")) == cfg  # the full resolved config
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert any("val_top1_err" in r and r["iteration"] == 2 for r in records)
    assert 0 <= final["val_top1_err"] <= 100 and "val_10crop_top1_err" in final
    assert final["val_images"] == 2 * len(TOY_CLASSES)

    backbone = tmp_path / "backbone.safetensors"
    state, meta = load_state_dict_file(backbone), read_safetensors_metadata(backbone)
    assert meta["arch"]["depth"] == 18 and meta["input_format"] == "RGB"
    assert meta["pixel_mean"] == [123.675, 116.28, 103.53]
    model = build_resnet(18, num_classes=5, norm=cfg.MODEL.NORM)  # the toy config sets the norm
    missing = load_state_dict_checked(model, state, allow_missing=("linear.",))
    assert sorted(missing) == ["linear.bias", "linear.weight"]
    trained = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(state[k], trained[k]) for k in state)
    assert build_model(meta["arch"]).state_dict().keys() >= state.keys()

    again = evaluate_only(cfg)
    assert again["val_top1_err"] == pytest.approx(final["val_top1_err"])


def test_resume_from_checkpoint_matches_uninterrupted(toy_cls_root, tmp_path):
    # workers=2: the resumed run's augmentation must not depend on the data-loader processes.
    cfg = tiny_cfg(toy_cls_root, tmp_path / "full", "DATA.NUM_WORKERS", "2", "TEST.TEN_CROP", "False")
    train(cfg)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(tmp_path / "full" / "model_0000002.pth", resumed)
    (resumed / "last_checkpoint").write_text("model_0000002.pth")
    # As after a kill: the metrics of iterations 3 and 4 were logged after that checkpoint.
    shutil.copy(tmp_path / "full" / "metrics.json", resumed)
    train(tiny_cfg(toy_cls_root, resumed, "DATA.NUM_WORKERS", "2", "TEST.TEN_CROP", "False"), resume=True)
    a = torch.load(tmp_path / "full" / "model_final.pth", weights_only=True)["model"]
    b = torch.load(resumed / "model_final.pth", weights_only=True)["model"]
    start = torch.load(resumed / "model_0000002.pth", weights_only=True)["model"]
    assert not torch.equal(a["linear.weight"], start["linear.weight"])  # it did train after the resume
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x) for x in (resumed / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in lines if "loss" in r] == [1, 2, 3, 4]  # each iteration once


def test_amp_bf16_channels_last_accumulation_mixing_run(toy_cls_root, tmp_path):
    cfg = tiny_cfg(toy_cls_root, tmp_path, "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", "bf16",
                   "SOLVER.CHANNELS_LAST", "True",
                   "SOLVER.GRAD_ACCUM_STEPS", "2", "SOLVER.MIXUP_ALPHA", "0.2", "SOLVER.CUTMIX_ALPHA", "1.0",
                   "SOLVER.LABEL_SMOOTHING", "0.1", "SOLVER.OPTIMIZER_IMPL", "fused", "SOLVER.MAX_ITER", "2",
                   "DATA.RECIPE", "modern", "TEST.TEN_CROP", "False")
    train(cfg)
    records = [json.loads(x) for x in (tmp_path / "metrics.json").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    init = build_resnet(18, 5).state_dict()
    after = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert not torch.equal(init["stem.conv1.weight"], after["stem.conv1.weight"])


def test_nan_loss_stops_with_iteration_and_keeps_checkpoint(toy_cls_root, tmp_path, monkeypatch):
    calls = []
    real = engine.classification_loss

    def poisoned(logits, targets, label_smoothing=0.0):
        calls.append(1)
        loss = real(logits, targets, label_smoothing)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(engine, "classification_loss", poisoned)
    cfg = tiny_cfg(toy_cls_root, tmp_path, "SOLVER.LOG_PERIOD", "20", "TEST.TEN_CROP", "False")
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at iteration 3 .*model_0000002.pth"):
        train(cfg)
    model = build_resnet(18, 5, norm=cfg.MODEL.NORM)
    checkpointer = SafeCheckpointer(model, str(tmp_path))
    ckpt = checkpointer.get_checkpoint_file()
    assert os.path.basename(ckpt) == "model_0000002.pth" and not (tmp_path / "model_0000004.pth").exists()
    assert checkpointer.load(ckpt)["iteration"] == 2
    assert not (tmp_path / "model_final.pth").exists()
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_dead_worker_error_names_the_sample(toy_cls_root, monkeypatch):
    cfg = tiny_cfg(toy_cls_root, "unused")
    train_set, _ = build_datasets(cfg)
    victim = train_set.samples[7][0]
    real = cls_data.decode_image

    def crashing(path, **kw):
        if path == victim:
            os.kill(os.getpid(), signal.SIGKILL)  # like the OOM killer taking a worker
        return real(path, **kw)

    monkeypatch.setattr(cls_data, "decode_image", crashing)  # inherited by forked workers
    loader = build_train_loader(train_set, 4, 40, num_workers=1, persistent_workers=False, timeout=60)
    with pytest.raises(DataLoaderWorkerError, match=os.path.basename(victim)):
        for _ in iterate_loader(loader, train_set):
            pass


def test_prune_checkpoints_keeps_newest_and_the_published_one(tmp_path):
    from resnet_det.checkpoint.checkpointer import LAST_CHECKPOINT

    for it in (31, 62, 93, 124, 155):
        (tmp_path / f"model_{it:07d}.pth").write_bytes(b"x")
    (tmp_path / "model_final.pth").write_bytes(b"x")
    (tmp_path / LAST_CHECKPOINT).write_text("model_0000062.pth")  # e.g. a resume pointed back
    deleted = prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in deleted) == ["model_0000031.pth", "model_0000093.pth"]
    left = sorted(p.name for p in tmp_path.glob("model_*.pth"))
    assert left == ["model_0000062.pth", "model_0000124.pth", "model_0000155.pth", "model_final.pth"]
    assert prune_checkpoints(tmp_path, 0) == []  # 0 keeps everything


def test_training_keeps_at_most_max_checkpoints(toy_cls_root, tmp_path):
    cfg = tiny_cfg(toy_cls_root, tmp_path, "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.MAX_CHECKPOINTS_TO_KEEP", "2",
                   "TEST.EVAL_PERIOD", "0", "TEST.TEN_CROP", "False")
    train(cfg)
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == [
        "model_0000003.pth", "model_0000004.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
