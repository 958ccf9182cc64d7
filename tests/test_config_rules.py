"""One config mechanism for both stages: the same error shape for a bad value, closest keys for
a typo, and what to write instead for a key whose pretraining meaning was renamed."""
import os

import pytest

from resnet_det.config import load_pretrain_cfg
from resnet_det.config import ConfigError, ConfigKeyError, load_config

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
