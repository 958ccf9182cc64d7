import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from projects.paper.cifar import build_cifar_resnet
from projects.paper.layer_responses import (
    init_layer_responses,
    layer_responses,
    plot_layer_responses,
    residual_blocks,
)
from resnet_det.models import build_resnet

ROOT = Path(__file__).resolve().parents[3]


def _trained_like(model):
    # Non-trivial BN statistics and scales, as a trained net has, so that eval-mode responses
    # depend on them.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.2, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.parametrize("plain", [False, True])
def test_one_std_per_block_matching_a_manual_computation(plain):
    model = _trained_like(build_cifar_resnet(14, plain=plain))
    x = torch.randn(6, 3, 32, 32)
    stds = layer_responses(model, x)
    blocks = residual_blocks(model)
    assert len(stds) == len(blocks) == 6
    assert all(s > 0 for s in stds)
    # By hand for the first block of res3: its branch is conv2(relu(conv1(input))), read before
    # the shortcut is added.
    with torch.no_grad():
        inp = model.forward_features(x)["res2"]
        block = model.res3[0]
        branch = block.conv2(F.relu(block.conv1(inp)))
    expected = branch.transpose(0, 1).flatten(1).std(dim=1).mean().item()
    assert stds[2] == pytest.approx(expected, rel=1e-5)
    # No hooks left behind.
    assert all(not b.last_conv()._forward_hooks for b in blocks)


def test_response_is_after_the_last_bn():
    model = _trained_like(build_cifar_resnet(8))
    with torch.no_grad():
        model.res3[0].conv2.norm.weight.zero_()
        model.res3[0].conv2.norm.bias.zero_()
    stds = layer_responses(model, torch.randn(4, 3, 32, 32))
    assert stds[1] == 0 and stds[0] > 0 and stds[2] > 0


def test_batch_stats_leaves_the_model_unchanged_and_init_responses_are_bn_scale():
    model = build_cifar_resnet(8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stds = layer_responses(model, torch.randn(16, 3, 32, 32), batch_stats=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # With batch statistics every channel is normalised to std 1, times BN's scale (1 at init).
    assert stds == pytest.approx([1.0] * 3, abs=0.02)
    responses = init_layer_responses(["plain-8", "resnet-14"], torch.randn(8, 3, 32, 32))
    assert {k: len(v) for k, v in responses.items()} == {"plain-8": 3, "resnet-14": 6}


def test_works_on_the_imagenet_resnet_family():
    model = _trained_like(build_resnet(18, num_classes=5))
    assert len(layer_responses(model, torch.randn(2, 3, 64, 64))) == 8


def test_plot_file_is_written(tmp_path):
    png = plot_layer_responses({"plain-8": [0.5, 0.3, 0.9], "resnet-8": [0.2, 0.1, 0.4]},
                               tmp_path / "sub" / "r.png")  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cli_random_init(tmp_path):
    out = tmp_path / "init.png"
    cmd = [sys.executable, str(ROOT / "tools" / "layer_responses.py"),
           "--random-init", "plain-8", "resnet-8", "--num-images", "8", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    assert {k: len(v) for k, v in json.loads(out.with_suffix(".json").read_text()).items()} == {
        "plain-8": 3,
        "resnet-8": 3,
    }
    proc = subprocess.run(cmd[:2] + ["--study", str(tmp_path / "nowhere")], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode != 0 and "nowhere/curves.json not found" in proc.stderr
