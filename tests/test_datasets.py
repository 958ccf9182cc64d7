"""Detection dataset registration, loading checks on hostile annotation files, check_datasets."""
import json
import logging
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json
from detectron2.data.datasets.pascal_voc import load_voc_instances
from detectron2.structures import BoxMode
from PIL import Image

import resnet_det  # noqa: F401
from projects.toy_data import TOY_CLASSES, make_toy_data, register_toy_datasets
from resnet_det.config import get_cfg
from resnet_det.data import datasets as ds
from resnet_det.data.datasets import (
    DatasetError,
    check_datasets,
    load_coco_json_checked,
    load_voc_instances_checked,
    register_all_datasets,
)

LOGGER = "resnet_det.data.datasets"


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_data(str(root), kinds=("voc", "coco"), num_det_train=12, num_det_val=6)
    return str(root)


@pytest.fixture
def toy_registered(toy_root):
    register_toy_datasets(toy_root)
    yield toy_root
    ds.set_strict(False)


# ------------------------------------------------------------------ helpers for bad files

VOC_OBJECT = """<object><name>{name}</name><difficult>0</difficult>
<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"""


def voc_xml(objects="", width=100, height=80):
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return f"<annotation><filename>x.jpg</filename>{size}{objects}</annotation>"


def voc_obj(name="circle", x0=11, y0=21, x1=40, y1=60):
    return VOC_OBJECT.format(name=name, x0=x0, y0=y0, x1=x1, y1=y1)


def write_voc(root, xmls, split="trainval"):
    """A VOC folder with one xml per id (None: no xml file) and a split listing all ids."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for image_id, text in xmls.items():
        if text is not None:
            with open(os.path.join(root, "Annotations", image_id + ".xml"), "w") as f:
                f.write(text)
        Image.new("RGB", (100, 80)).save(os.path.join(root, "JPEGImages", image_id + ".jpg"))
    with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.write("\n".join(xmls) + "\n")
    return str(root)


def coco_dict(annotations=None, images=None):
    images = images or [
        {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80},
    ]
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0,
             "area": 1200},
            {"id": 2, "image_id": 2, "category_id": 5, "bbox": [5, 5, 20, 10], "iscrowd": 0,
             "area": 200},
        ]
    categories = [{"id": 3, "name": "circle"}, {"id": 5, "name": "square"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def ann(id, image_id=1, category_id=3, bbox=(10, 20, 30, 40)):
    return {"id": id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox),
            "iscrowd": 0, "area": 100.0}


def write_coco(tmp_path, data, name="ann.json", images=True):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    image_dir = tmp_path / "images"
    image_dir.mkdir(exist_ok=True)
    if images and isinstance(data, dict):
        for im in data["images"]:
            Image.new("RGB", (im["width"], im["height"])).save(image_dir / im["file_name"])
    return str(path), str(image_dir)


def boxes_of(dicts):
    return [
        [round(v, 3) for v in BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)]
        for d in dicts
        for a in d["annotations"]
    ]


# ------------------------------------------------------------------ clean data, registration


def test_checked_loaders_equal_detectron2_loaders_on_clean_toy_data(toy_root):
    voc = os.path.join(toy_root, "VOC2007")
    assert load_voc_instances_checked(voc, "trainval", TOY_CLASSES) == load_voc_instances(
        voc, "trainval", TOY_CLASSES
    )
    coco = os.path.join(toy_root, "coco")
    args = (os.path.join(coco, "annotations", "instances_val2017.json"),
            os.path.join(coco, "val2017"), "toy_coco_val")
    ours = load_coco_json_checked(*args)
    assert ours == load_coco_json(*args)
    assert len(ours) == 6 and sum(len(d["annotations"]) for d in ours) >= 6


def test_register_all_datasets_is_idempotent_and_follows_the_toy_root(toy_registered, tmp_path,
                                                                      monkeypatch):
    register_toy_datasets(toy_registered)  # a second call must not raise "already registered"
    for name in ("toy_coco_train", "toy_coco_val", "toy_voc_trainval", "toy_voc_test"):
        assert name in DatasetCatalog.list()
    meta = MetadataCatalog.get("toy_voc_test")
    assert (meta.evaluator_type, meta.year, tuple(meta.thing_classes)) == (
        "pascal_voc", 2007, TOY_CLASSES)
    assert MetadataCatalog.get("toy_coco_val").evaluator_type == "coco"
    assert len(DatasetCatalog.get("toy_voc_test")) == 6
    check_datasets(["toy_coco_train", "toy_coco_val", "toy_voc_trainval", "toy_voc_test"])

    register_toy_datasets(tmp_path / "elsewhere")  # the same names at another root replace them
    assert MetadataCatalog.get("toy_voc_test").dirname == str(tmp_path / "elsewhere" / "VOC2007")
    with pytest.raises(DatasetError, match="DATASETS.VOC_REGISTER"):
        check_datasets(["toy_voc_test"])


def test_config_registers_coco_json_and_sets_strict(tmp_path):
    cfg = get_cfg()
    assert cfg.DATASETS.STRICT is False
    json_file, image_dir = write_coco(tmp_path, coco_dict())
    entries = f"[['my_ds', '{json_file}', '{image_dir}']]"
    cfg.merge_from_list(["DATASETS.COCO_JSON_REGISTER", entries,
                         "DATASETS.STRICT", "True"])
    try:
        register_all_datasets(cfg)
        assert ds.is_strict()
        assert MetadataCatalog.get("my_ds").json_file == json_file
        assert [d["image_id"] for d in DatasetCatalog.get("my_ds")] == [1, 2]
        cfg.DATASETS.COCO_JSON_REGISTER = [["only_two", json_file]]
        with pytest.raises(DatasetError, match="only_two"):
            register_all_datasets(cfg)
    finally:
        ds.set_strict(False)


def test_detectron2_builtin_voc_name_goes_through_the_checks(tmp_path, monkeypatch):
    register_all_datasets()
    dirname = MetadataCatalog.get("voc_2007_test").dirname
    if os.path.isabs(dirname):
        pytest.skip("DETECTRON2_DATASETS points at a real dataset; not writing there")
    monkeypatch.chdir(tmp_path)
    # A box running past the right border: detectron2's own loader keeps it unclipped.
    write_voc(dirname, {"000001": voc_xml(voc_obj("dog", 50, 10, 160, 30))}, split="test")
    (box,) = boxes_of(DatasetCatalog.get("voc_2007_test"))
    assert box == [49.0, 9.0, 100.0, 30.0]
    check_datasets(["voc_2007_test"])


def test_detectron2_builtin_coco_name_goes_through_the_checks(tmp_path, monkeypatch):
    register_all_datasets()
    meta = MetadataCatalog.get("coco_2017_val")
    if os.path.isabs(meta.json_file):
        pytest.skip("DETECTRON2_DATASETS points at a real dataset; not writing there")
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.dirname(meta.json_file))
    with open(meta.json_file, "w") as f:
        json.dump(coco_dict(images=[{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}] * 2,
                            annotations=[]), f)
    with pytest.raises(DatasetError, match=r"instances_val2017.json.*\n.*duplicate ids \[1\]"):
        DatasetCatalog.get("coco_2017_val")


# ------------------------------------------------------------------ hostile VOC files


def test_voc_one_line_split_file_and_extra_tags(tmp_path):
    extra = ("<object><name>square</name><pose>Left</pose><part><name>hand</name></part>"
             "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>100</xmax><ymax>80</ymax>"
             "<zmax>3</zmax></bndbox><occluded>1</occluded></object>")
    root = write_voc(tmp_path / "voc", {"only": voc_xml(extra + "<segmented>0</segmented>")})
    dicts = load_voc_instances_checked(root, "trainval", TOY_CLASSES)
    assert [d["image_id"] for d in dicts] == ["only"]
    assert dicts[0]["annotations"] == [
        {"category_id": 1, "bbox": [0.0, 0.0, 100.0, 80.0], "bbox_mode": BoxMode.XYXY_ABS}
    ]


@pytest.mark.parametrize(
    "bad_object, kind, field",
    [
        ("<object><name>circle</name><difficult>0</difficult></object>", "object without <bndbox>",
         "class 'circle'"),
        (voc_obj(x0="12a"), "missing or non-numeric box coordinate", "<bndbox><xmin> is '12a'"),
        (voc_obj().replace("<ymax>60</ymax>", ""), "missing or non-numeric box coordinate",
         "<bndbox><ymax> is None"),
        (voc_obj(x0=50, x1=20), "inverted/negative-size box", "bbox=[49.0, 20.0, 20.0, 60.0]"),
        (voc_obj(x0=31, x1=30), "zero-area box", "bbox=[30.0, 20.0, 30.0, 60.0]"),
        (voc_obj(x0=150, x1=190), "box outside the image", "in 100x80 image"),
        ("<object><bndbox><xmin>1</xmin></bndbox></object>", "object without <name>",
         "no <name> tag"),
    ],
)
def test_voc_bad_objects_are_dropped_with_a_count_or_raise_when_strict(
    tmp_path, caplog, bad_object, kind, field
):
    good = voc_obj("ring", 2, 2, 10, 10)
    root = write_voc(tmp_path / "voc", {"000001": voc_xml(good + bad_object),
                                        "000002": voc_xml(good)})
    xml = os.path.join(root, "Annotations", "000001.xml")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dicts = load_voc_instances_checked(root, "trainval", TOY_CLASSES, strict=False)
    assert boxes_of(dicts) == [[1.0, 1.0, 10.0, 10.0]] * 2
    assert f"1 x {kind}" in caplog.text and xml in caplog.text and field in caplog.text
    with pytest.raises(DatasetError) as info:
        load_voc_instances_checked(root, "trainval", TOY_CLASSES, strict=True)
    assert kind in str(info.value) and xml in str(info.value) and field in str(info.value)


def test_voc_box_crossing_the_border_is_clipped_and_counted(tmp_path, caplog):
    root = write_voc(tmp_path / "voc", {"a": voc_xml(voc_obj(x0=-20, y0=5, x1=120, y1=79))})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dicts = load_voc_instances_checked(root, "trainval", TOY_CLASSES)
    assert boxes_of(dicts) == [[0.0, 4.0, 100.0, 79.0]]
    assert "1 x box crossing the image border (clipped)" in caplog.text
    with pytest.raises(DatasetError, match="crossing the image border"):
        load_voc_instances_checked(root, "trainval", TOY_CLASSES, strict=True)


def test_voc_unknown_class_names_are_dropped_with_a_count_or_raise_when_strict(tmp_path, caplog):
    root = write_voc(tmp_path / "voc", {"a": voc_xml(voc_obj("hexagon")),
                                        "b": voc_xml(voc_obj("circle") + voc_obj("hexagon"))})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dicts = load_voc_instances_checked(root, "trainval", TOY_CLASSES)
    assert [len(d["annotations"]) for d in dicts] == [0, 1]
    assert "2 x object of unknown class 'hexagon' (dropped)" in caplog.text
    assert os.path.join(root, "Annotations", "a.xml") in caplog.text
    with pytest.raises(DatasetError, match="unknown class 'hexagon'") as info:
        load_voc_instances_checked(root, "trainval", TOY_CLASSES, strict=True)
    assert "register the dataset with it in the class list" in str(info.value)


@pytest.mark.parametrize(
    "xml_text, kind",
    [
        (None, "missing annotation file"),
        ("<annotation><size><width>100", "xml that does not parse"),
        (voc_xml(voc_obj(), width="wide"), "non-numeric image size"),
        (voc_xml(voc_obj()).replace("<height>80</height>", ""), "non-numeric image size"),
    ],
)
def test_voc_broken_files_skip_the_image_or_raise_when_strict(tmp_path, caplog, xml_text, kind):
    root = write_voc(tmp_path / "voc", {"bad": xml_text, "good": voc_xml(voc_obj())})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dicts = load_voc_instances_checked(root, "trainval", TOY_CLASSES)
    assert [d["image_id"] for d in dicts] == ["good"]
    bad_xml = os.path.join(root, "Annotations", "bad.xml")
    assert kind in caplog.text and bad_xml in caplog.text
    with pytest.raises(DatasetError, match=kind):
        load_voc_instances_checked(root, "trainval", TOY_CLASSES, strict=True)


# ------------------------------------------------------------------ hostile COCO files


def test_coco_broken_json_names_the_file(tmp_path):
    json_file, image_dir = write_coco(tmp_path, '{"images": [1, 2')
    with pytest.raises(DatasetError, match=f"{json_file} is not valid json"):
        load_coco_json_checked(json_file, image_dir)
    json_file, image_dir = write_coco(tmp_path, "[]", name="list.json")
    with pytest.raises(DatasetError, match="list.json: top level is list"):
        load_coco_json_checked(json_file, image_dir)
    with pytest.raises(DatasetError, match="nothere.json does not exist"):
        load_coco_json_checked(str(tmp_path / "nothere.json"), image_dir)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["images"].append(dict(d["images"][0])), r"'images' has duplicate ids \[1\]"),
        (lambda d: d["annotations"].append(ann(2)), r"'annotations' has duplicate ids \[2\]"),
        (lambda d: d["categories"].append({"id": 3, "name": "x"}),
         r"'categories' has duplicate ids \[3\]"),
        (lambda d: d.pop("categories"), "key 'categories' is missing"),
        (lambda d: d["annotations"][0].pop("id"), "1 entries of 'annotations' have no 'id'"),
    ],
)
def test_coco_ambiguous_structure_raises_in_both_modes(tmp_path, change, message):
    data = coco_dict()
    change(data)
    json_file, image_dir = write_coco(tmp_path, data, images=False)
    for strict in (False, True):
        with pytest.raises(DatasetError, match=message) as info:
            load_coco_json_checked(json_file, image_dir, strict=strict)
        assert json_file in str(info.value)


@pytest.mark.parametrize(
    "bad, kind, detail",
    [
        (ann(7, image_id=99), "annotation of a missing image", "image_id=99 is not in 'images'"),
        (ann(7, category_id=4), "unknown category id", "category_id=4 is not in 'categories'"),
        (ann(7, bbox=(1, 2, "3", 4)), "bbox is not 4 numbers", "bbox=[1, 2, '3', 4]"),
        (ann(7, bbox=(10, 10, -5, 8)), "inverted/negative-size box", "bbox=[10, 10, -5, 8]"),
        (ann(7, bbox=(10, 10, 0, 8)), "zero-area box", "bbox=[10, 10, 0, 8]"),
        (ann(7, bbox=(300, 10, 5, 8)), "box outside the image", "bbox=[300, 10, 5, 8]"),
    ],
)
def test_coco_bad_annotations_are_dropped_with_a_count_or_raise_when_strict(
    tmp_path, caplog, bad, kind, detail
):
    data = coco_dict()
    data["annotations"].append(bad)
    json_file, image_dir = write_coco(tmp_path, data)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dicts = load_coco_json_checked(json_file, image_dir, "my_bad_coco", strict=False)
    assert boxes_of(dicts) == [[10.0, 20.0, 40.0, 60.0], [5.0, 5.0, 25.0, 15.0]]
    assert f"1 x {kind}" in caplog.text and detail in caplog.text and json_file in caplog.text
    with pytest.raises(DatasetError) as info:
        load_coco_json_checked(json_file, image_dir, "my_bad_coco", strict=True)
    assert kind in str(info.value) and detail in str(info.value)


def test_coco_boxes_crossing_the_border_are_clipped_beyond_the_rounding_tolerance(tmp_path, caplog):
    data = coco_dict(annotations=[ann(1, bbox=(90, 70, 10.4, 10.5)),  # rounding: quiet
                                  ann(2, bbox=(-12, 60, 30, 30))])  # real overshoot: counted
    json_file, image_dir = write_coco(tmp_path, data)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dicts = load_coco_json_checked(json_file, image_dir)
    assert boxes_of(dicts) == [[90.0, 70.0, 100.0, 80.0], [0.0, 60.0, 18.0, 80.0]]
    assert dicts[0]["annotations"][0]["bbox_mode"] == BoxMode.XYWH_ABS
    assert "1 x box crossing the image border (clipped)" in caplog.text
    assert "bbox=[-12, 60, 30, 30]" in caplog.text and "bbox=[90, 70" not in caplog.text


def test_coco_image_without_size_is_skipped(tmp_path, caplog):
    data = coco_dict()
    data["images"][1]["width"] = "100"
    json_file, image_dir = write_coco(tmp_path, data, images=False)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dicts = load_coco_json_checked(json_file, image_dir)
    assert [d["image_id"] for d in dicts] == [1]
    assert "image id 2 (b.jpg)" in caplog.text and "width='100'" in caplog.text


# ------------------------------------------------------------------ check_datasets


def test_check_datasets_lists_every_missing_path_with_the_fix(tmp_path):
    data = coco_dict()
    json_file, image_dir = write_coco(tmp_path, data)
    os.remove(os.path.join(image_dir, "b.jpg"))
    ds.register_coco_json("chk_coco_missing_image", json_file, image_dir)
    ds.register_coco_json("chk_coco_no_json", str(tmp_path / "no.json"), image_dir)
    voc = write_voc(tmp_path / "voc", {"x1": voc_xml(voc_obj()), "x2": None})
    os.remove(os.path.join(voc, "JPEGImages", "x1.jpg"))
    ds.register_voc("chk_voc_missing", voc, "trainval", TOY_CLASSES)
    ds.register_voc("chk_voc_no_split", voc, "test", TOY_CLASSES)
    open(os.path.join(voc, "ImageSets", "Main", "val.txt"), "w").write("\n")
    ds.register_voc("chk_voc_empty_split", voc, "val", TOY_CLASSES)
    with pytest.raises(DatasetError) as info:
        check_datasets(["chk_coco_missing_image", "chk_coco_no_json", "chk_voc_missing",
                        "chk_voc_no_split", "chk_voc_empty_split", "chk_voc_misng"])
    message = str(info.value)
    assert "dataset check failed (7 problems)" in message
    assert f"split file {os.path.join(voc, 'ImageSets', 'Main', 'val.txt')} lists no images" \
        in message
    assert f"1 of 2 image files are missing: {os.path.join(image_dir, 'b.jpg')}" in message
    assert f"annotation json {tmp_path / 'no.json'} does not exist" in message
    assert f"1 of 2 annotation files are missing: {os.path.join(voc, 'Annotations', 'x2.xml')}" \
        in message
    assert f"1 of 2 image files are missing: {os.path.join(voc, 'JPEGImages', 'x1.jpg')}" in message
    assert f"split file {os.path.join(voc, 'ImageSets', 'Main', 'test.txt')} does not exist" \
        in message
    assert "'chk_voc_misng' is not registered; close names: ['chk_voc_missing'" in message
    assert message.count("DATASETS.COCO_JSON_REGISTER") >= 3


def test_check_datasets_names_detectron2_datasets_for_builtin_names(tmp_path, monkeypatch):
    register_all_datasets()
    if os.path.isabs(MetadataCatalog.get("coco_2017_train").json_file):
        pytest.skip("DETECTRON2_DATASETS points at a real dataset")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    with pytest.raises(DatasetError) as info:
        check_datasets(["coco_2017_train", "voc_2012_trainval"])
    message = str(info.value)
    assert "datasets/coco/annotations/instances_train2017.json does not exist" in message
    assert "VOC folder datasets/VOC2012 does not exist" in message
    assert message.count("set DETECTRON2_DATASETS") == 3
    assert f"resolved to {tmp_path / 'datasets'}" in message


def test_check_datasets_reports_coco_structure_errors(tmp_path):
    data = coco_dict()
    data["images"].append(dict(data["images"][0]))
    json_file, image_dir = write_coco(tmp_path, data)
    ds.register_coco_json("chk_coco_dup", json_file, image_dir)
    with pytest.raises(DatasetError, match=r"chk_coco_dup: .*ann.json:\n.*duplicate ids \[1\]"):
        check_datasets("chk_coco_dup")


def test_check_datasets_scans_many_images_with_one_listing_per_folder(tmp_path, monkeypatch):
    images = [{"id": i, "file_name": f"sub{i % 2}/{i:06d}.jpg", "width": 4, "height": 4}
              for i in range(1, 601)]
    json_file, image_dir = write_coco(tmp_path, coco_dict(images=images, annotations=[]),
                                      images=False)
    for i in range(1, 601):
        if i != 234:
            path = os.path.join(image_dir, images[i - 1]["file_name"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "wb").close()
    ds.register_coco_json("chk_many", json_file, image_dir)
    calls = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: calls.append(p) or real_scandir(p))
    with pytest.raises(DatasetError, match=r"1 of 600 image files are missing: .*sub0/000234.jpg"):
        check_datasets(["chk_many"])
    assert sorted(calls) == [os.path.join(image_dir, "sub0"), os.path.join(image_dir, "sub1")]


def test_sanitize_keeps_box_mode_and_values_of_clean_boxes():
    record = {"file_name": "x.jpg", "width": 50, "height": 40, "annotations": [
        {"bbox": [1.5, 2.5, 10.0, 20.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}]}
    problems = ds._Problems("test", strict=False)
    ds.sanitize_boxes([record], problems)
    assert not problems
    np.testing.assert_array_equal(record["annotations"][0]["bbox"], [1.5, 2.5, 10.0, 20.0])


# ------------------------------------------------------------------ hostile image files

from detectron2.data import build_detection_train_loader  # noqa: E402

from resnet_det.data.mapper import RobustDatasetMapper  # noqa: E402
from resnet_det.utils.image import ImageError, read_image_checked  # noqa: E402


def noise_image(width=40, height=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def mapper(is_train=True, **kwargs):
    return RobustDatasetMapper(is_train=is_train, augmentations=[], image_format="RGB", **kwargs)


def record(path, width=40, height=30):
    return {"file_name": str(path), "image_id": 1, "width": width, "height": height,
            "annotations": [{"bbox": [1, 1, 20, 20], "bbox_mode": BoxMode.XYXY_ABS,
                             "category_id": 0, "iscrowd": 0}]}


def bad_image(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        Image.fromarray(noise_image()).save(path, quality=95)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "not_an_image":
        path.write_text("<html>404 Not Found</html>")
    return path


@pytest.mark.parametrize("kind", ["zero_byte", "truncated", "not_an_image"])
def test_unreadable_images_are_skipped_in_training_and_raise_in_eval(tmp_path, caplog, kind):
    path = bad_image(tmp_path, kind)
    train = mapper(True)
    with caplog.at_level(logging.WARNING, logger="resnet_det.data.mapper"):
        assert train(record(path)) is None
    assert train.num_skipped == 1 and str(path) in caplog.text
    for m in (mapper(False), mapper(True, strict=True)):
        with pytest.raises(ImageError, match=f"{path}: cannot decode image"):
            m(record(path))


def test_an_unreadable_test_image_in_a_loader_worker_is_one_line_naming_it(tmp_path, capsys):
    """Evaluation reads through DataLoader workers, which torch re-raises as the error's type with
    the worker's traceback for a message: the command line prints the message only."""
    import torch.utils.data

    from resnet_det.utils.cli import run_cli

    path = bad_image(tmp_path, "truncated")
    test_mapper = mapper(False)
    loader = torch.utils.data.DataLoader([record(path)], batch_size=1, num_workers=1,
                                         collate_fn=lambda batch: [test_mapper(d) for d in batch])
    assert run_cli(lambda: list(loader)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"error: {path}: cannot decode image (OSError: image file is truncated")
    assert "Traceback" not in "\n".join(err) and len(err) == 2


def test_png_named_jpg_cmyk_and_grayscale_load_as_rgb(tmp_path):
    pixels = noise_image()
    png = tmp_path / "really_a_png.jpg"
    Image.fromarray(pixels).save(png, format="PNG")
    np.testing.assert_array_equal(read_image_checked(str(png), "RGB", (30, 40)), pixels)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(pixels).convert("CMYK").save(cmyk, quality=100)
    out = read_image_checked(str(cmyk), "BGR", (30, 40))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    # CMYK round trip through JPEG is lossy; the colours must still be the image's colours.
    assert np.abs(out[..., ::-1].astype(int) - pixels).mean() < 12
    gray = tmp_path / "gray.jpg"
    Image.fromarray(pixels[..., 0]).save(gray, quality=100)
    out = read_image_checked(str(gray), "BGR", (30, 40))
    assert out.shape == (30, 40, 3)
    assert (out[..., 0] == out[..., 2]).all()
    assert np.abs(out[..., 0].astype(int) - pixels[..., 0]).mean() < 3


def test_16bit_image_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 30 * 40).reshape(30, 40).astype(np.uint16)
    path = tmp_path / "depth16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    out = read_image_checked(str(path), "RGB", (30, 40))
    np.testing.assert_array_equal(out[..., 1], (values.astype(int) + 128) // 257)  # rounded
    assert out.max() == 255 and out.min() == 0 and np.median(out) > 100


def test_huge_image_is_refused_before_decoding_above_the_pixel_limit(tmp_path):
    path = tmp_path / "panorama.png"
    Image.new("RGB", (20000, 8), (10, 20, 30)).save(path)
    # Below the limit a 20000-px side loads; above it the header alone decides.
    assert read_image_checked(str(path), "RGB", (8, 20000)).shape == (8, 20000, 3)
    with pytest.raises(ImageError, match=r"panorama.png: 20000x8 = 160000 pixels .*"
                                         r"MAX_IMAGE_PIXELS=100000"):
        read_image_checked(str(path), "RGB", (8, 20000), max_pixels=100_000)
    small = mapper(True, max_image_pixels=100_000)
    assert small(record(path, 20000, 8)) is None and small.num_skipped == 1


def test_exif_rotation_follows_the_annotation_size(tmp_path, caplog):
    pixels = noise_image(40, 30)
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    # Annotated on the displayed (rotated) image, as detectron2 assumes.
    assert read_image_checked(str(path), "RGB", (40, 30)).shape == (40, 30, 3)
    # Annotated on the stored pixels: the rotation is ignored, with a warning.
    with caplog.at_level(logging.WARNING, logger="resnet_det.data.mapper"):
        assert read_image_checked(str(path), "RGB", (30, 40)).shape == (30, 40, 3)
    assert "ignoring the EXIF rotation" in caplog.text and str(path) in caplog.text
    with pytest.raises(ImageError, match="rotate the file or its annotation"):
        read_image_checked(str(path), "RGB", (30, 40), strict=True)
    with pytest.raises(ImageError, match=r"image is \(40, 30\) \(h, w\) but its annotation says"):
        read_image_checked(str(path), "RGB", (30, 30))


def test_train_loader_skips_a_bad_image_instead_of_crashing(tmp_path):
    good = []
    for i in range(3):
        path = tmp_path / f"good{i}.jpg"
        Image.fromarray(noise_image(seed=i)).save(path)
        good.append(record(path))
    bad = record(bad_image(tmp_path, "zero_byte"))
    loader = build_detection_train_loader(
        dataset=[bad] + good, mapper=mapper(True), total_batch_size=2, num_workers=0
    )
    seen = set()
    for _, batch in zip(range(4), loader):
        assert len(batch) == 2
        seen.update(d["file_name"] for d in batch)
        assert all(d["instances"].gt_boxes.tensor.shape == (1, 4) for d in batch)
    assert seen <= {g["file_name"] for g in good}


def test_mapper_reads_strict_and_pixel_limit_from_the_config(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.STRICT", "True", "DATASETS.MAX_IMAGE_PIXELS", "1000",
                         "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.FORMAT", "RGB"])
    train = RobustDatasetMapper(cfg, True)
    assert (train.strict, train.max_image_pixels) == (True, 1000)
    path = tmp_path / "big.png"
    Image.fromarray(noise_image(40, 30)).save(path)
    with pytest.raises(ImageError, match="1200 pixels is above DATASETS.MAX_IMAGE_PIXELS=1000"):
        train(record(path))
    cfg.DATASETS.MAX_IMAGE_PIXELS = 2000
    out = RobustDatasetMapper(cfg, True)(record(path))
    assert tuple(out["image"].shape) == (3, 32, 43) and len(out["instances"]) == 1
