"""One config mechanism for both stages: the same error shape for a bad value, closest keys for
a typo, and what to write instead for a key whose pretraining meaning was renamed."""
import os

import pytest

from resnet_det.config import ConfigError, ConfigKeyError, load_config, load_pretrain_cfg

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
TOY_PRETRAIN = os.path.join(CONFIGS, "pretrain", "toy_resnet18.yaml")
TOY_DETECT = os.path.join(CONFIGS, "toy", "faster_rcnn_r18_fpn_coco.yaml")


@pytest.mark.parametrize("load, config, key", [
    (load_pretrain_cfg, TOY_PRETRAIN, "SOLVER.BASE_LR"),
    (load_config, TOY_DETECT, "SOLVER.BASE_LR"),
])
def test_bad_value_has_one_shape_in_both_stages(load, config, key):
    with pytest.raises(ConfigError, match=rf"{config}: invalid config value\(s\):\n  {key} = -1.0; "
                                          r"allowed: a number > 0"):
        load(config, [key, "-1.0"])


@pytest.mark.parametrize("load, config", [(load_pretrain_cfg, TOY_PRETRAIN), (load_config, TOY_DETECT)])
def test_typo_names_the_closest_key_in_both_stages(load, config, tmp_path):
    with pytest.raises(ConfigKeyError, match=r"Non-existent config key: SOLVER.BASE_LRR; closest known "
                                             r"keys: \['SOLVER.BASE_LR'"):
        load(config, ["SOLVER.BASE_LRR", "0.1"])
    bad = tmp_path / "typo.yaml"
    bad.write_text(f"_BASE_: {os.path.abspath(config)}\nSOLVER:\n  MOMENTUMM: 0.9\n")
    with pytest.raises(ConfigKeyError, match=r"typo.yaml: Non-existent config key: SOLVER.MOMENTUMM; "
                                             r"closest known keys: \['SOLVER.MOMENTUM'"):
        load(str(bad))


@pytest.mark.parametrize("old, value, advice", [
    ("SOLVER.STEPS", "[30, 60]", r"SOLVER.STEP_EPOCHS \(SOLVER.STEPS is detectron2's key, in iterations\)"),
    ("SOLVER.AMP", "bf16", r"SOLVER.AMP.ENABLED True with SOLVER.AMP.PRECISION bf16 or fp16"),
])
def test_old_pretraining_keys_say_what_to_write(old, value, advice, tmp_path):
    with pytest.raises(ConfigKeyError, match=rf"config key {old} is no longer used; .*{advice}"):
        load_pretrain_cfg(TOY_PRETRAIN, [old, value])
    section, name = old.split(".")
    old_file = tmp_path / "old.yaml"
    old_file.write_text(f"_BASE_: {os.path.abspath(TOY_PRETRAIN)}\n{section}:\n  {name}: {value}\n")
    with pytest.raises(ConfigKeyError, match=rf"old.yaml: config key {old} is no longer used; .*{advice}"):
        load_pretrain_cfg(str(old_file))


def test_width_is_checked_in_both_stages():
    with pytest.raises(ConfigError, match=r"MODEL.STEM_OUT_CHANNELS = 48; allowed: a multiple of 32"):
        load_pretrain_cfg(TOY_PRETRAIN, ["MODEL.STEM_OUT_CHANNELS", "48"])
    with pytest.raises(ConfigError, match=r"MODEL.RESNETS.STEM_OUT_CHANNELS = 48; allowed: a multiple of 32"):
        load_config(TOY_DETECT, ["MODEL.RESNETS.STEM_OUT_CHANNELS", "48"])
    # detectron2's bottleneck width must agree with ours; basic blocks ignore it, as there.
    r50 = ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STEM_OUT_CHANNELS", "32"]
    with pytest.raises(ConfigError, match=r"MODEL.RESNETS.WIDTH_PER_GROUP = 64; "
                                          r"allowed: 32 \(= MODEL.RESNETS.STEM_OUT_CHANNELS\)"):
        load_config(TOY_DETECT, r50)
    fixed = load_config(TOY_DETECT, r50 + ["MODEL.RESNETS.WIDTH_PER_GROUP", "32"])
    assert fixed.MODEL.RESNETS.STEM_OUT_CHANNELS == 32
    assert load_config(TOY_DETECT, ["MODEL.RESNETS.STEM_OUT_CHANNELS", "32"]).MODEL.RESNETS.WIDTH_PER_GROUP == 64


def test_keys_mean_what_detectron2_means():
    pre = load_pretrain_cfg(TOY_PRETRAIN, ["SOLVER.AMP.ENABLED", "True"])
    det = load_config(TOY_DETECT)
    # SOLVER.AMP.ENABLED alone is detectron2's fp16 AMP in both stages.
    assert pre.SOLVER.AMP.PRECISION == "fp16" and "ENABLED" in det.SOLVER.AMP
    # TEST.EVAL_PERIOD 0: evaluate only after training, in both stages.
    assert load_pretrain_cfg("").TEST.EVAL_PERIOD == 0 == det.TEST.EVAL_PERIOD
    assert tuple(load_pretrain_cfg("").SOLVER.STEP_EPOCHS) == (30.0, 60.0)


def test_res2_out_channels_follows_the_width_or_is_refused():
    # detectron2's key for res2's width: filled in from the width, refused when it disagrees.
    assert load_config(TOY_DETECT).MODEL.RESNETS.RES2_OUT_CHANNELS == 64  # ResNet-18
    assert load_config(TOY_DETECT, ["MODEL.RESNETS.STEM_OUT_CHANNELS", "32"]).MODEL.RESNETS.RES2_OUT_CHANNELS == 32
    r50 = ["MODEL.RESNETS.DEPTH", "50"]
    assert load_config(TOY_DETECT, r50).MODEL.RESNETS.RES2_OUT_CHANNELS == 256
    with pytest.raises(ConfigError, match=r"MODEL.RESNETS.RES2_OUT_CHANNELS = 256; allowed: 64 or 0"):
        load_config(TOY_DETECT, ["MODEL.RESNETS.RES2_OUT_CHANNELS", "256"])
    with pytest.raises(ConfigError, match=r"MODEL.RESNETS.RES2_OUT_CHANNELS = 64; allowed: 256 or 0 .*x4"):
        load_config(TOY_DETECT, r50 + ["MODEL.RESNETS.RES2_OUT_CHANNELS", "64"])


def test_a_schedule_that_cannot_work_is_named_before_training():
    from resnet_det.config import schedule_warnings

    assert schedule_warnings(load_config(TOY_DETECT)) == []
    # A new user's 400 iterations on detectron2's warm-up of 1000 and steps for a longer run.
    cfg = load_config(TOY_DETECT, ["SOLVER.MAX_ITER", "400", "SOLVER.WARMUP_ITERS", "1000",
                                   "SOLVER.STEPS", "(300, 500)", "SOLVER.BASE_LR", "0.0025"])
    warmup, steps = schedule_warnings(cfg)
    assert "SOLVER.WARMUP_ITERS 1000 is not shorter than SOLVER.MAX_ITER 400" in warmup
    assert "approaches 0.00025 at its end, never SOLVER.BASE_LR 0.0025" in warmup  # one step within the run
    assert "SOLVER.STEPS [500] are not before SOLVER.MAX_ITER 400" in steps


def test_loader_workers_are_capped_at_the_machines_cpus(monkeypatch):
    from resnet_det.engine import launch

    monkeypatch.setattr(launch, "available_cpus", lambda: 2)
    assert launch.cap_workers(1) == (1, None)
    workers, note = launch.cap_workers(4)
    assert workers == 2 and note == "DATALOADER.NUM_WORKERS 4 is more than the 2 CPU(s) available per process: using 2"
    assert launch.cap_workers(4, processes=2, key="DATA.NUM_WORKERS")[0] == 1
