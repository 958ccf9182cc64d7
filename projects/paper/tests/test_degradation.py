import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from projects.paper.cifar import build_cifar_resnet
from projects.paper.degradation import (
    StudyData,
    StudyRecipe,
    augment_batch,
    evaluate_error,
    load_study_data,
    load_study_model,
    parse_model_spec,
    run_degradation_study,
    train_model,
)

ROOT = Path(__file__).resolve().parents[3]


def test_parse_model_spec():
    assert parse_model_spec("plain-20") == (20, True)
    assert parse_model_spec("ResNet56") == (56, False)
    with pytest.raises(ValueError, match="'vgg-16'.*plain-DEPTH"):
        parse_model_spec("vgg-16")


def test_augment_batch_is_crop_and_flip():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(8 * 3 * 6 * 6, dtype=torch.uint8).view(8, 3, 6, 6)
    # Without padding the only freedom is the flip: each output is the image or its mirror.
    out = augment_batch(x, gen, pad=0)
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)]
    assert all(f or torch.equal(o, xi) for f, o, xi in zip(flipped, out, x))
    assert 0 < sum(flipped) < len(x)
    # With padding every output keeps its size; shifted crops bring in zero borders.
    ones = torch.ones(64, 1, 8, 8)
    out = augment_batch(ones, gen, pad=2)
    assert out.shape == ones.shape
    assert (out == 0).any() and (out == 1).any()


def _colour_data(n_per_class, size, seed):
    # Class = dominant colour channel: learnable in a few dozen steps, so a working loop must.
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(n_per_class)
    images = torch.randint(0, 90, (len(labels), 3, size, size), generator=g)
    images[torch.arange(len(labels)), labels] += 160
    return images.to(torch.uint8), labels


def test_train_model_learns_an_easy_task():
    train_x, train_y = _colour_data(32, 8, 0)
    test_x, test_y = _colour_data(10, 8, 1)
    data = StudyData(train_x, train_y, test_x, test_y, ["r", "g", "b"], source={})
    torch.manual_seed(0)
    model = build_cifar_resnet(8, num_classes=3)
    before = evaluate_error(model, test_x, test_y, data.normalize)
    recipe = StudyRecipe(iterations=30, batch_size=16, lr=0.05, eval_period=10, augment=False)
    curves = train_model(model, data, recipe)
    assert curves["iteration"] == [10, 20, 30]
    assert curves["lr"] == pytest.approx([0.05, 0.005, 0.0005])  # / 10 at 50% and 75%
    assert before > 0.3
    assert curves["test_error"][-1] < 0.1
    assert curves["train_error"][-1] < curves["train_error"][0] or curves["train_error"][0] == 0


def _check_study_output(out, toy_dir, names, iterations, eval_period):
    png = (out / "degradation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    study = json.loads((out / "curves.json").read_text())
    assert list(study["models"]) == names
    points = list(range(eval_period, iterations + 1, eval_period))
    for name, m in study["models"].items():
        assert m["iteration"] == points
        for key in ("train_error", "test_error", "train_loss"):
            assert len(m[key]) == len(points), (name, key)
            assert all(math.isfinite(v) for v in m[key]), (name, key)
        assert all(0 <= e <= 1 for e in m["train_error"] + m["test_error"])
        # The saved weights are the trained ones: they reproduce the last test error.
        model, meta = load_study_model(out / m["weights"])
        assert model.arch["plain"] == m["plain"] and meta["iterations"] == iterations
        data = load_study_data(toy_dir, image_size=study["data"]["image_size"])
        data.pixel_mean, data.pixel_std = meta["pixel_mean"], meta["pixel_std"]
        err = evaluate_error(model, data.test_images, data.test_labels, data.normalize)
        assert err == pytest.approx(m["test_error"][-1])
    return study


def test_study_on_tiny_setting(tmp_path):
    data = load_study_data(
        tmp_path / "toy", image_size=8, toy_train_per_class=4, toy_val_per_class=2
    )
    assert (tmp_path / "toy" / "train" / "circle").is_dir()  # generated because it was missing
    assert data.train_images.shape == (20, 3, 8, 8) and len(data.test_labels) == 10
    recipe = StudyRecipe(iterations=4, batch_size=8, eval_period=2)
    result = run_degradation_study(["plain-8", "resnet-8"], data, tmp_path / "out", recipe, log=None)
    study = _check_study_output(tmp_path / "out", tmp_path / "toy", ["plain-8", "resnet-8"], 4, 2)
    assert study["models"].keys() == result["models"].keys()
    # One recipe for all: the same seed gives both models the same batches and initial weights,
    # so training the same spec twice gives the same curves.
    again = run_degradation_study(["plain-8"], data, tmp_path / "again", recipe, log=None)
    assert again["models"]["plain-8"]["train_loss"] == result["models"]["plain-8"]["train_loss"]


@pytest.mark.slow
def test_study_tool_and_layer_responses_cli(tmp_path):
    out = tmp_path / "study"
    cmd = [
        sys.executable, str(ROOT / "tools" / "degradation_study.py"),
        "--data", str(tmp_path / "toy"), "--out", str(out),
        "--models", "plain-8", "resnet-14",
        "--image-size", "16", "--toy-train-per-class", "6", "--toy-val-per-class", "2",
        "--iterations", "6", "--eval-period", "3", "--batch-size", "8",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    study = _check_study_output(out, tmp_path / "toy", ["plain-8", "resnet-14"], 6, 3)
    assert study["data"]["num_train"] == 30 and study["data"]["num_test"] == 10
    cmd = [sys.executable, str(ROOT / "tools" / "layer_responses.py"), "--study", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "layer_responses.png").is_file()
    responses = json.loads((out / "layer_responses.json").read_text())
    assert {k: len(v) for k, v in responses.items()} == {"plain-8": 3, "resnet-14": 6}


def test_study_data_errors_name_the_problem(tmp_path):
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"only_train has no val/"):
        load_study_data(tmp_path / "only_train")
    with pytest.raises(ValueError, match="exactly one"):
        load_study_data(tmp_path / "x", tmp_path / "y")
    with pytest.raises(FileNotFoundError, match=r"data_batch_1\.bin"):
        load_study_data(cifar10_dir=tmp_path)


def test_study_data_from_cifar10_binary(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}.bin", 4) for i in range(1, 6)] + [("test_batch.bin", 3)]:
        rec = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, size=n)
        rec.tofile(tmp_path / name)
    data = load_study_data(cifar10_dir=tmp_path)
    assert data.train_images.shape == (20, 3, 32, 32) and len(data.test_labels) == 3
    assert len(data.classes) == 10 and data.source["kind"] == "cifar10"
    x = data.normalize(data.train_images)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4  # normalised by the training statistics
