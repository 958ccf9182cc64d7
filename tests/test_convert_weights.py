"""tools/convert_weights.py: pickled detectron2/MSRA weights -> safetensors, only when asked."""
import importlib.util
import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

import resnet_det  # noqa: F401
from resnet_det.checkpoint import read_safetensors_metadata
from resnet_det.checkpoint.detection import ResNetDetCheckpointer, WeightsMismatchError
from resnet_det.config import load_config
from resnet_det.models import build_resnet

ROOT = Path(__file__).resolve().parents[1]
FPN = ROOT / "configs" / "faster_rcnn_r101_fpn_coco.yaml"
TOY_C4 = ROOT / "configs" / "toy" / "faster_rcnn_r18_c4_voc.yaml"
MSRA_INPUT = [
    "INPUT.FORMAT",
    "BGR",
    "MODEL.PIXEL_MEAN",
    "[103.53, 116.28, 123.675]",
    "MODEL.PIXEL_STD",
    "[1.0, 1.0, 1.0]",
]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "convert_weights", ROOT / "tools" / "convert_weights.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _caffe2_name(key):
    """Our ResNet key -> the MSRA/Caffe2 blob name (the inverse of detectron2's conversion)."""
    if key.startswith("linear."):
        return {"linear.weight": "pred_w", "linear.bias": "pred_b"}[key]
    key = key.replace("stem.conv1.norm.", "res_conv1_bn_").replace("stem.conv1.", "conv1_")
    key = re.sub(r"\.conv([123])\.", lambda m: ".branch2" + "abc"[int(m[1]) - 1] + ".", key)
    key = key.replace(".shortcut.", ".branch1.").replace(".norm.", "_bn_")
    key = key.replace("_bn_weight", "_bn_s").replace("_bn_bias", "_bn_b")
    return key.replace(".", "_").replace("_weight", "_w").replace("_bias", "_b")


def test_refuses_without_allow_pickle_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    src = tmp_path / "evil.pkl"
    src.write_bytes(pickle.dumps({"model": RunsCode()}))
    with pytest.raises(SystemExit) as info:
        _tool()([str(src), str(tmp_path / "out.safetensors")])
    assert info.value.code != 0
    assert "--allow-pickle" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_msra_caffe2_backbone_converts_and_loads(tmp_path, capsys):
    torch.manual_seed(0)
    # MSRA: stride in the 1x1, frozen BN; NCHW like the detector's trunk, so the comparison
    # below is of the weights, not of summation order.
    net = build_resnet(50, norm="FrozenBN", channels_last=False).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name:
                p.copy_(
                    torch.rand_like(p) * 0.5 + 0.5
                    if name.endswith("weight")
                    else torch.randn_like(p) * 0.1
                )
    blobs = {
        _caffe2_name(k): v.numpy()
        for k, v in net.state_dict().items()
        if not k.endswith(("running_mean", "running_var"))  # Caffe2 BN stores scale and bias only
    }
    assert (
        "res2_0_branch2a_w" in blobs
        and "res_conv1_bn_s" in blobs
        and "res2_0_branch1_bn_b" in blobs
    )
    src, dst = tmp_path / "R-50.pkl", tmp_path / "R-50.safetensors"
    src.write_bytes(pickle.dumps({"blobs": blobs}))
    _tool()(["--allow-pickle", str(src), str(dst)])
    out = capsys.readouterr()
    assert "executes any code" in out.err
    meta = read_safetensors_metadata(dst)
    assert meta["arch"]["depth"] == 50 and meta["arch"]["stride_in_1x1"] is True
    assert (
        meta["input_format"] == "BGR"
        and json.loads(out.out[out.out.index("{") :])["arch"]["name"] == "resnet"
    )

    # The converted file states BGR input: our RGB configs refuse it, naming the keys.
    with pytest.raises(
        WeightsMismatchError, match=r"INPUT.FORMAT is 'RGB', the file expects 'BGR'"
    ):
        ResNetDetCheckpointer(
            build_model(load_config(str(FPN), ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "50"]))
        ).load(str(dst))
    cfg = load_config(str(FPN), ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "50"] + MSRA_INPUT)
    model = build_model(cfg).eval()
    checkpointer = ResNetDetCheckpointer(model)
    checkpointer.load(str(dst))
    assert all(
        k.startswith(("backbone.fpn_", "proposal_generator.", "roi_heads."))
        for k in checkpointer.incompatible_keys.missing_keys
    )
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert (
            model.backbone.bottom_up(x)["res5"] - net.forward_features(x)["res5"]
        ).abs().max() < 1e-4


def test_detectron2_model_zoo_pickle_converts_to_a_detector_file(tmp_path):
    cfg = load_config(str(TOY_C4), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg)
    src, dst = tmp_path / "model_final.pkl", tmp_path / "model_final.safetensors"
    zoo = {
        "model": {k: v.numpy() for k, v in model.state_dict().items()},
        "__author__": "Detectron2 Model Zoo",
    }
    src.write_bytes(pickle.dumps(zoo))
    _tool()(["--allow-pickle", str(src), str(dst)])
    other = build_model(cfg)
    checkpointer = ResNetDetCheckpointer(other)
    checkpointer.load(str(dst))
    assert not checkpointer.incompatible_keys.missing_keys
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
