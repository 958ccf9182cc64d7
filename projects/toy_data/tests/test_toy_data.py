import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from projects.toy_data import TOY_CLASSES, TOY_COCO_CATEGORY_IDS, make_toy_data
from projects.toy_data import shapes as toy

SMALL = dict(
    num_train_per_class=3,
    num_val_per_class=2,
    num_det_train=8,
    num_det_val=4,
    cls_size=32,
    det_size=(96, 128),
)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    written = make_toy_data(out, seed=0, **SMALL)
    return out, written


def _files(root):
    """{relative path: bytes} of every file under root."""
    found = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def test_same_seed_gives_identical_bytes_and_other_seed_differs(toy_dir, tmp_path):
    out, _ = toy_dir
    make_toy_data(tmp_path / "again", seed=0, **SMALL)
    make_toy_data(tmp_path / "other", seed=1, **SMALL)
    first, again, other = _files(out), _files(tmp_path / "again"), _files(tmp_path / "other")
    # classification JPEGs + VOC jpg/xml pairs + 4 ImageSets lists + COCO jpgs + 2 jsons
    assert len(first) == 5 * (3 + 2) + 2 * (8 + 4) + 4 + (8 + 4) + 2
    assert again == first
    assert other.keys() == first.keys()
    changed = [path for path in first if other[path] != first[path]]
    # Every image and annotation file changes with the seed; only the ImageSets lists stay.
    assert len(changed) == len(first) - 4


def test_kinds_are_independent_of_each_other(toy_dir, tmp_path):
    out, _ = toy_dir
    make_toy_data(tmp_path, seed=0, kinds=["voc"], **SMALL)
    assert sorted(os.listdir(tmp_path)) == ["VOC2007"]
    assert _files(tmp_path / "VOC2007") == _files(out / "VOC2007")


def test_refuses_to_write_into_a_non_empty_dataset_dir(toy_dir):
    out, _ = toy_dir
    with pytest.raises(FileExistsError, match="coco"):
        make_toy_data(out, kinds=["coco"], **SMALL)
    with pytest.raises(ValueError, match="unknown toy data kinds"):
        make_toy_data(out, kinds=["imagenet"])


def test_classification_tree_loads_with_imagefolder(toy_dir):
    from torchvision.datasets import ImageFolder

    _, written = toy_dir
    info = written["classification"]
    for split, per_class in (("train", 3), ("val", 2)):
        dataset = ImageFolder(info[split])
        assert dataset.classes == sorted(TOY_CLASSES)
        assert len(dataset) == info[f"num_{split}"] == 5 * per_class
        assert np.bincount(dataset.targets).tolist() == [per_class] * 5
        image, _ = dataset[0]
        assert image.size == (32, 32) and image.mode == "RGB"


def test_coco_json_loads_and_boxes_match_polygons(toy_dir):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    _, written = toy_dir
    info = written["coco"]
    image_ids = set()
    for split, num_images in (("train", 8), ("val", 4)):
        coco = COCO(info[f"{split}_json"])
        assert coco.getCatIds() == list(TOY_COCO_CATEGORY_IDS) == [1, 2, 3, 5, 7]
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(TOY_CLASSES)
        assert len(coco.getImgIds()) == num_images
        assert len(coco.getAnnIds()) == info[f"num_{split}_annotations"]
        assert not image_ids & set(coco.getImgIds()), "image ids must be unique across splits"
        image_ids |= set(coco.getImgIds())
        for image in coco.loadImgs(coco.getImgIds()):
            with Image.open(os.path.join(info[f"{split}_images"], image["file_name"])) as f:
                assert f.size == (image["width"], image["height"]) == (128, 96)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            assert 1 <= len(anns) <= 4
            for ann in anns:
                x, y, w, h = ann["bbox"]
                assert w > 0 and h > 0 and ann["area"] > 0 and ann["iscrowd"] == 0
                assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
                (polygon,) = ann["segmentation"]
                xs, ys = polygon[0::2], polygon[1::2]
                assert len(xs) >= 3
                extent = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                assert ann["bbox"] == pytest.approx(extent, abs=1e-6)
                # pycocotools' rasterization of the polygon agrees with the drawn area, except
                # that a polygon cannot carry the ring's hole (ring is category 7).
                polygon_area = mask_utils.area(coco.annToRLE(ann))
                if ann["category_id"] == 7:
                    assert polygon_area > 1.3 * ann["area"]
                else:
                    assert polygon_area == pytest.approx(ann["area"], rel=0.2, abs=8)


def test_voc_tree_is_consistent(toy_dir):
    _, written = toy_dir
    root = written["voc"]["root"]
    main = os.path.join(root, "ImageSets", "Main")
    splits = {}
    for split in ("trainval", "test", "train", "val"):
        with open(os.path.join(main, split + ".txt")) as f:
            splits[split] = f.read().split()
    assert len(splits["trainval"]) == 8 and len(splits["test"]) == 4
    assert not set(splits["trainval"]) & set(splits["test"])
    assert sorted(splits["train"] + splits["val"]) == splits["trainval"]
    for image_id in splits["trainval"] + splits["test"]:
        with Image.open(os.path.join(root, "JPEGImages", image_id + ".jpg")) as f:
            width, height = f.size
        annotation = ET.parse(os.path.join(root, "Annotations", image_id + ".xml")).getroot()
        assert annotation.findtext("filename") == image_id + ".jpg"
        assert int(annotation.findtext("size/width")) == width
        assert int(annotation.findtext("size/height")) == height
        assert int(annotation.findtext("size/depth")) == 3
        objects = annotation.findall("object")
        assert 1 <= len(objects) <= 4
        for obj in objects:
            assert obj.findtext("name") in TOY_CLASSES
            assert obj.findtext("pose") == "Unspecified"
            assert obj.findtext("truncated") in ("0", "1") and obj.findtext("difficult") == "0"
            xmin, ymin, xmax, ymax = (
                int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")
            )
            assert 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height


def test_detection_boxes_are_tight_to_the_drawn_pixels():
    truncated = 0
    for index in range(20):
        _, objects = toy._detection_image(np.random.default_rng(index), 96, 128)
        for i, obj in enumerate(objects):
            x0, y0, x1, y1 = obj["box"]
            ys, xs = np.nonzero(obj["mask"])
            # Pixel i covers [i, i + 1): the drawn pixels stay inside the VOC integer box and
            # reach within 1.5 px of every side of the float box (sharp corners lose a little).
            left, top, right, bottom = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            assert math.floor(x0) <= left <= x0 + 1.5 and x1 - 1.5 <= right <= math.ceil(x1)
            assert math.floor(y0) <= top <= y0 + 1.5 and y1 - 1.5 <= bottom <= math.ceil(y1)
            truncated += obj["truncated"]
            for other in objects[i + 1 :]:
                assert not (obj["mask"] & other["mask"]).any()
    assert truncated > 0, "some shapes should run off the image edge"
