"""A user's own data from the command line: DATASETS.VOC_REGISTER on a LabelImg-style folder
(own class names, a .png among the images, objects of classes outside the list), the dataset
browser, and the rough edges a new user hit (errors as messages, warnings, learning rate,
single-class pretraining)."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

import resnet_det  # noqa: F401
from projects.toy_data import TOY_CLASSES, dataset_opts, make_toy_data
from resnet_det.config import ConfigError, load_config
from resnet_det.data import datasets as ds
from resnet_det.data.datasets import DatasetError, check_datasets, register_all_datasets

# The own classes of the toy "labelimg" kind (projects.toy_data.shapes.LABELIMG_CLASSES).
LABELIMG_CLASSES = ("circle", "square")

ROOT = Path(__file__).resolve().parents[1]
TOY_VOC = ROOT / "configs" / "toy" / "faster_rcnn_r18_c4_voc.yaml"
LOGGER = "resnet_det.data.datasets"
# Upstream warnings every command printed before resnet_det.utils.cli.silence_known_warnings.
UPSTREAM_WARNINGS = ("torch.jit.script` is deprecated", "torch.meshgrid", "is_fx_tracing",
                     "pkg_resources is deprecated", "No CUDA runtime is found")


@pytest.fixture(scope="module")
def labelimg(tmp_path_factory):
    """A LabelImg-style folder: 10 trainval + 5 test images of 96x128, every third a .png."""
    root = tmp_path_factory.mktemp("mine")
    info = make_toy_data(root, kinds=["labelimg"], num_det_train=10, num_det_val=5,
                         det_size=(96, 128))["labelimg"]
    return info


def register_entries(root, classes=LABELIMG_CLASSES):
    classes = list(classes)
    return (f"[['mine_trainval', '{root}', 'trainval', {classes}], "
            f"['mine_test', '{root}', 'test', {classes}]]")


def own_data_opts(root, classes=LABELIMG_CLASSES):
    return ["DATASETS.VOC_REGISTER", register_entries(root, classes),
            "DATASETS.TRAIN", "('mine_trainval',)", "DATASETS.TEST", "('mine_test',)",
            "MODEL.ROI_HEADS.NUM_CLASSES", str(len(classes))]


def cli_env(**extra):
    """The environment of a command a user types: warnings not silenced by the test runner."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "RESNET_DET_DEBUG")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


# ------------------------------------------------------------------ DATASETS.VOC_REGISTER


def test_voc_register_reads_labelimg_xml_png_images_and_counts_unknown_classes(labelimg, caplog):
    root = labelimg["root"]
    cfg = load_config(str(TOY_VOC), own_data_opts(root))
    register_all_datasets(cfg)
    meta = MetadataCatalog.get("mine_trainval")
    assert (meta.evaluator_type, meta.thing_classes, meta.year) == (
        "pascal_voc", list(LABELIMG_CLASSES), 2012)
    check_datasets(["mine_trainval", "mine_test"])
    from resnet_det.engine.detection import check_num_classes

    check_num_classes(cfg)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        records = DatasetCatalog.get("mine_trainval")
    assert len(records) == 10
    suffixes = {Path(r["file_name"]).suffix for r in records}
    assert suffixes == {".png", ".jpg"}
    for r in records:  # each file named by its xml exists and has the annotated size
        with Image.open(r["file_name"]) as im:
            assert im.size == (r["width"], r["height"])
    kept = sum(len(r["annotations"]) for r in records)
    assert kept and {a["category_id"] for r in records for a in r["annotations"]} <= {0, 1}
    # Every object of another shape is an unknown class: counted per name, then dropped.
    unknown = [n for n in TOY_CLASSES if n not in LABELIMG_CLASSES]
    counted = sum(int(line.split(" x ")[0]) for line in caplog.text.splitlines()
                  if "object of unknown class" in line)
    total = sum(len(ET_objects(r)) for r in records)
    assert counted == total - kept > 0
    assert any(f"object of unknown class '{n}' (dropped)" in caplog.text for n in unknown)
    ds.set_strict(True)
    try:
        with pytest.raises(DatasetError, match="object of unknown class"):
            DatasetCatalog.get("mine_trainval")
    finally:
        ds.set_strict(False)


def ET_objects(record):
    import xml.etree.ElementTree as ET

    xml = Path(record["file_name"]).parents[1] / "Annotations" / (record["image_id"] + ".xml")
    return ET.parse(xml).findall("object")


def test_voc_register_missing_png_is_listed_before_training(labelimg, tmp_path):
    import shutil

    root = tmp_path / "mine"
    shutil.copytree(labelimg["root"], root)
    png = sorted((root / "JPEGImages").glob("*.png"))[0]
    png.unlink()
    cfg = load_config(str(TOY_VOC), own_data_opts(root))
    register_all_datasets(cfg)
    with pytest.raises(DatasetError, match=rf"1 of \d+ image files are missing: {png}"):
        check_datasets(["mine_trainval", "mine_test"])


@pytest.mark.parametrize("entry, words", [
    ("[['a', 'data/mine', 'trainval']]", "is not [name, dirname, split, [class names]]"),
    ("[['a', 'data/mine', 'trainval', []]]", "at least one class name"),
    ("[['a', 'data/mine', 'trainval', ['cat', 'cat']]]", "class names twice: ['cat']"),
])
def test_voc_register_bad_entries_are_refused(entry, words):
    cfg = load_config(str(TOY_VOC), ["DATASETS.VOC_REGISTER", entry])
    with pytest.raises(DatasetError) as info:
        register_all_datasets(cfg)
    assert words in str(info.value)


def test_num_classes_must_match_the_dataset(labelimg):
    from resnet_det.engine.detection import check_num_classes

    opts = own_data_opts(labelimg["root"])[:-2]  # NUM_CLASSES stays the toy config's 5
    cfg = load_config(str(TOY_VOC), opts)
    register_all_datasets(cfg)
    with pytest.raises(ConfigError, match="NUM_CLASSES is 5, but\n  dataset 'mine_trainval' has 2"):
        check_num_classes(cfg)


# ------------------------------------------------------------------ browser


def test_browser_draws_each_ground_truth_box_in_its_class_colour(labelimg, tmp_path):
    from resnet_det.utils.draw import class_color

    out = tmp_path / "browse"
    cmd = [sys.executable, str(ROOT / "tools" / "browse_dataset.py"), "--config", str(TOY_VOC),
           "--output", str(out), "--split", "test", *own_data_opts(labelimg["root"])]
    proc = subprocess.run(cmd, env=cli_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "5 image(s) drawn" in proc.stdout
    for warning in UPSTREAM_WARNINGS:
        assert warning not in proc.stderr
    register_all_datasets(load_config(str(TOY_VOC), own_data_opts(labelimg["root"])))
    checked = unchanged = 0
    for record in DatasetCatalog.get("mine_test"):
        drawn = np.asarray(Image.open(out / "mine_test" / (record["image_id"] + ".png")), float)
        original = np.asarray(Image.open(record["file_name"]).convert("RGB"), float)
        assert drawn.shape == original.shape
        for ann in record["annotations"]:
            x0, y0, x1, y1 = (int(round(v)) for v in ann["bbox"])
            colour = np.array(class_color(ann["category_id"]))
            # The lower half of the box's left edge (the class label sits at its top) is painted
            # in the class's colour.
            edge = (slice((y0 + y1) // 2, y1 - 1), x0)
            assert (np.abs(drawn[edge] - colour).sum(-1) <= 6).all()
            assert np.median(np.abs(drawn[edge] - original[edge]).sum(-1)) > 20
            checked += 1
        if not record["annotations"]:  # only objects of unknown classes: nothing drawn
            assert np.abs(drawn - original).max() <= 2
            unchanged += 1
    assert checked > 0 and unchanged > 0


def test_crops_of_the_boxes_make_an_imagenet_layout_folder(labelimg, tmp_path):
    from projects.browse import export_crops

    cfg = load_config(str(TOY_VOC), own_data_opts(labelimg["root"]))
    counts = export_crops(cfg, tmp_path / "val", "test", context=0.0, min_side=1)
    register_all_datasets(cfg)
    records = DatasetCatalog.get("mine_test")
    expected = {}
    for r in records:
        for a in r["annotations"]:
            name = LABELIMG_CLASSES[a["category_id"]]
            expected[name] = expected.get(name, 0) + 1
    assert dict(counts) == expected
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == sorted(expected)
    record = next(r for r in records if r["annotations"])
    x0, y0, x1, y1 = record["annotations"][0]["bbox"]
    crop = np.asarray(Image.open(tmp_path / "val" / LABELIMG_CLASSES[
        record["annotations"][0]["category_id"]] / f"{record['image_id']}_0.png"))
    image = np.asarray(Image.open(record["file_name"]).convert("RGB"))
    assert np.array_equal(crop, image[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))])


def test_crops_skip_an_unreadable_photo_as_training_does_and_strict_names_it(labelimg, tmp_path, caplog):
    import shutil

    from projects.browse import export_crops
    from resnet_det.utils.image import ImageError

    root = tmp_path / "mine"
    shutil.copytree(labelimg["root"], root, symlinks=True)
    cfg = load_config(str(TOY_VOC), own_data_opts(root))
    register_all_datasets(cfg)
    records = [r for r in DatasetCatalog.get("mine_test") if r["annotations"]]
    broken = Path(records[0]["file_name"])
    broken.write_bytes(broken.read_bytes()[:-40])  # truncated, as a photo cut short in transfer
    with caplog.at_level(logging.WARNING):
        counts = export_crops(cfg, tmp_path / "val", "test", context=0.0, min_side=1)
    assert sum(counts.values()) == sum(len(r["annotations"]) for r in records[1:])
    assert f"{broken}: cannot decode image" in caplog.text
    strict = load_config(str(TOY_VOC), own_data_opts(root, TOY_CLASSES) + ["DATASETS.STRICT", "True"])
    with pytest.raises(ImageError, match=f"{broken}: cannot decode image"):
        export_crops(strict, tmp_path / "strict", "test")


def test_background_crops_give_a_one_class_dataset_the_two_classes_pretraining_needs(labelimg, tmp_path):
    from projects.browse.crops import BACKGROUND, _background_boxes, export_crops
    from resnet_det.config import load_pretrain_cfg
    from resnet_det.engine.classification import build_datasets

    one_class = own_data_opts(labelimg["root"], classes=["square"])
    cfg = load_config(str(TOY_VOC), one_class)
    for split, folder in (("train", "train"), ("test", "val")):
        counts = export_crops(cfg, tmp_path / folder, split, background=2, seed=0)
        assert set(counts) == {"square", BACKGROUND} and counts[BACKGROUND] > 0
    # Where they are cut: boxes the size of the image's objects, inside it, touching none of them.
    boxes = [(10, 10, 60, 40), (100, 50, 150, 120)]
    found = _background_boxes(np.random.default_rng(0), boxes, 200, 160, 20)
    assert len(found) > 10
    for x0, y0, x1, y1 in found:
        assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 160
        assert (round(x1 - x0), round(y1 - y0)) in {(50, 30), (50, 70)}
        assert all(x0 >= b[2] or x1 <= b[0] or y0 >= b[3] or y1 <= b[1] for b in boxes)
    pre = load_pretrain_cfg(str(ROOT / "configs" / "pretrain" / "toy_resnet18.yaml"), ["DATA.ROOT", str(tmp_path)])
    train, val = build_datasets(pre)
    assert train.classes == val.classes == [BACKGROUND, "square"]


# ------------------------------------------------------------------ rough edges


def test_learning_rate_far_above_the_reference_warns_with_the_scaled_value(tmp_path):
    from detectron2.engine import default_argument_parser

    from resnet_det.engine.detection import setup

    config = ROOT / "configs" / "faster_rcnn_r101_voc.yaml"
    # train_det's setup logs it at the start of training (OUTPUT_DIR/log.txt and the console).
    args = default_argument_parser().parse_args([
        "--config-file", str(config), "SOLVER.BASE_LR", "0.01", "SOLVER.IMS_PER_BATCH", "2",
        "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu"])
    setup(args)
    log = (tmp_path / "log.txt").read_text()
    assert "Scaled linearly to batch 2 the reference is SOLVER.BASE_LR 0.0025" in log
    from resnet_det.config import learning_rate_warning

    cfg = load_config(str(config), ["SOLVER.BASE_LR", "0.01", "SOLVER.IMS_PER_BATCH", "2"])
    assert "4.0x the reference learning rate per image" in learning_rate_warning(cfg)
    # At 2x the reference (e.g. 0.005 at batch 2) it stays quiet; REFERENCE_LR 0 disables it.
    assert learning_rate_warning(load_config(str(config), [
        "SOLVER.BASE_LR", "0.005", "SOLVER.IMS_PER_BATCH", "2"])) is None
    assert learning_rate_warning(load_config(str(config), [
        "SOLVER.BASE_LR", "0.01", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.REFERENCE_LR", "0.0"])) is None


def test_pretraining_on_a_single_class_is_refused(tmp_path):
    from resnet_det.config import load_pretrain_cfg
    from resnet_det.engine.classification import build_datasets

    for split in ("train", "val"):
        folder = tmp_path / split / "raccoon"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(folder / f"{i}.jpg")
    cfg = load_pretrain_cfg(str(ROOT / "configs" / "pretrain" / "toy_resnet18.yaml"),
                            ["DATA.ROOT", str(tmp_path)])
    with pytest.raises(ValueError, match="needs at least two classes") as info:
        build_datasets(cfg)
    from resnet_det.data.imagenet import ClassTreeError

    assert isinstance(info.value, ClassTreeError)  # an expected error: message alone on the CLI


def test_unknown_config_key_is_a_config_error_naming_close_keys():
    from resnet_det.config import ConfigKeyError

    with pytest.raises(ConfigKeyError, match="MODEL.RESNETS.DEPTHH.*'MODEL.RESNETS.DEPTH'"):
        load_config(str(TOY_VOC), ["MODEL.RESNETS.DEPTHH", "50"])


def test_expected_errors_print_the_message_alone_and_exit_2(tmp_path):
    """A text file as MODEL.WEIGHTS: one line naming it, exit status 2, no traceback (and no
    upstream warnings); with --debug the traceback is back."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my training notes\n")
    cmd = [sys.executable, str(ROOT / "tools" / "demo.py"), "--config", str(TOY_VOC),
           "--weights", str(notes), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    proc = subprocess.run(cmd, env=cli_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {notes} is not a weights file" in proc.stderr
    assert "Traceback" not in proc.stderr
    for warning in UPSTREAM_WARNINGS:
        assert warning not in proc.stderr
    debug = subprocess.run(cmd + ["--debug"], env=cli_env(), cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "WeightsFileError" in debug.stderr


def test_commands_print_no_known_upstream_warning():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train_det.py"), "--help"],
                          env=cli_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "DATASETS.VOC_REGISTER" in proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr


def test_silencing_keeps_other_warnings(recwarn):
    import warnings

    import torch

    from resnet_det.utils.cli import silence_known_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        silence_known_warnings()
        torch.meshgrid(torch.arange(2), torch.arange(3))  # detectron2's anchor generator call
        warnings.warn("a warning of the user's own code", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in recwarn]
    assert messages == ["a warning of the user's own code"]


@pytest.mark.slow
def test_an_expected_error_in_launch_worker_processes_is_the_message_alone(tmp_path):
    """train_det --num-gpus 2 (two CPU processes): the weights are read in the workers."""
    toy = tmp_path / "toy"
    make_toy_data(toy, kinds=["voc"], num_det_train=4, num_det_val=2, det_size=(96, 128))
    notes = tmp_path / "notes.txt"
    notes.write_text("my training notes\n")
    cmd = [sys.executable, str(ROOT / "tools" / "train_det.py"), "--config", str(TOY_VOC),
           "--num-gpus", "2", "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(notes),
           "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
           "OUTPUT_DIR", str(tmp_path / "out"), *dataset_opts(toy)]
    proc = subprocess.run(cmd, env=cli_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"error: {notes} is not a weights file" in proc.stderr
    assert "Traceback" not in proc.stderr
    for warning in UPSTREAM_WARNINGS + ("`broadcast_buffers` is deprecated",):
        assert warning not in proc.stderr


# ------------------------------------------------------------------ the whole path


@pytest.mark.slow
def test_own_voc_dataset_trains_and_evaluates_from_one_command_line(labelimg, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "tools" / "train_det.py"), "--config", str(TOY_VOC),
           *own_data_opts(labelimg["root"]),
           "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
           "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2",
           "SOLVER.WARMUP_ITERS", "5", "SOLVER.STEPS", "()", "SOLVER.MAX_ITER", "20",
           "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(out)]
    proc = subprocess.run(cmd, env=cli_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    bbox = json.loads((out / "eval_results.json").read_text())["mine_test"]["bbox"]
    for name in LABELIMG_CLASSES:
        assert 0.0 <= bbox[f"AP50-{name}"] <= 100.0
    assert {"AP", "AP50", "AP75", "AP50_VOC07", "AP50_allpoints"} <= set(bbox)
    assert not any(k.startswith("AP50-") and k[5:] not in LABELIMG_CLASSES for k in bbox)
    log = (out / "log.txt").read_text()
    assert "object of unknown class" in log  # the counted warning reached the run's log
    for warning in UPSTREAM_WARNINGS:
        assert warning not in proc.stderr
