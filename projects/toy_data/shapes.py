"""Deterministic toy shape datasets written in the standard ImageNet, PASCAL VOC and COCO layouts.

The files are read back by the real readers (torchvision ImageFolder, detectron2's VOC and
COCO loaders, pycocotools), so tests and demos exercise the same code paths as real data.
"""
import json
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
from PIL import Image

__all__ = ["TOY_CLASSES", "TOY_COCO_CATEGORY_IDS", "KINDS", "make_toy_data",
           "make_classification_tree", "make_voc", "make_coco", "LABELIMG_CLASSES"]

TOY_CLASSES = ("circle", "square", "triangle", "cross", "ring")
# Not contiguous from zero, like real COCO, so that every reader has to map ids to indices.
TOY_COCO_CATEGORY_IDS = (1, 2, 3, 5, 7)
KINDS = ("classification", "voc", "coco", "labelimg")
# What make_toy_data writes unless told otherwise ("labelimg" only serves the custom-data docs
# and tests).
DEFAULT_KINDS = ("classification", "voc", "coco")
# The own classes of the "labelimg" dataset; its other shapes carry names outside this list.
LABELIMG_CLASSES = ("circle", "square")

JPEG_QUALITY = 90
# Independent random streams, so e.g. the VOC images do not change when COCO is skipped.
_STREAM = {"classification": 0, "voc": 1, "coco": 2, "labelimg": 3}
# A placement whose visible box is narrower than this many pixels is rejected and redrawn.
_MIN_BOX_PX = 6
# A truncated shape keeps at least this fraction of its width and of its height in the image.
_MIN_VISIBLE = 0.7
_CC0_URL = "https://creativecommons.org/publicdomain/zero/1.0/"


def make_toy_data(
    out_dir,
    seed=0,
    num_train_per_class=60,
    num_val_per_class=20,
    num_det_train=120,
    num_det_val=40,
    cls_size=64,
    det_size=(192, 256),
    kinds=DEFAULT_KINDS,
):
    """Write the requested toy datasets under `out_dir`; same seed => byte-identical files.

    Returns {kind: {paths and counts}} for each kind written (see the make_* helpers).
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown toy data kinds {unknown}; choose from {list(KINDS)}")
    det = (seed, num_det_train, num_det_val, det_size)
    makers = {
        "classification": lambda: make_classification_tree(
            os.path.join(out_dir, "imagenet"), seed, num_train_per_class, num_val_per_class,
            cls_size,
        ),
        "voc": lambda: make_voc(os.path.join(out_dir, "VOC2007"), *det),
        "coco": lambda: make_coco(os.path.join(out_dir, "coco"), *det),
        "labelimg": lambda: make_voc(os.path.join(out_dir, "labelimg"), *det, labelimg=True),
    }
    return {kind: make() for kind, make in makers.items() if kind in kinds}


def make_classification_tree(root, seed=0, num_train_per_class=60, num_val_per_class=20, size=64):
    """Write an ImageNet-style `root/{train,val}/<class>/*.JPEG` tree, one shape per image."""
    if size < 16:
        raise ValueError(f"cls_size={size} is too small to draw shapes; use at least 16")
    _require_empty(root)
    written = {"train": os.path.join(root, "train"), "val": os.path.join(root, "val"),
               "classes": list(TOY_CLASSES)}
    val_index = 0
    splits = (("train", 0, num_train_per_class), ("val", 1, num_val_per_class))
    for split, split_id, per_class in splits:
        for label, name in enumerate(TOY_CLASSES):
            class_dir = os.path.join(root, split, name)
            os.makedirs(class_dir)
            for i in range(per_class):
                rng = _rng(seed, "classification", split_id, label, i)
                image = _classification_image(rng, label, size)
                if split == "train":
                    file_name = f"{name}_{i:05d}.JPEG"
                else:
                    val_index += 1
                    file_name = f"ILSVRC2012_val_{val_index:08d}.JPEG"
                _save(image, os.path.join(class_dir, file_name))
        written[f"num_{split}"] = per_class * len(TOY_CLASSES)
    return written


def make_voc(root, seed=0, num_trainval=120, num_test=40, size=(192, 256), labelimg=False):
    """Write a PASCAL VOC2007-style tree (JPEGImages, Annotations, ImageSets/Main) at `root`.

    ``labelimg=True`` writes a user's own VOC-layout dataset as LabelImg saves it instead (<path>
    tags, every third image a .png, :data:`LABELIMG_CLASSES`, no train/val split files), the
    dataset docs/custom_data.md walks through.
    """
    height, width = _check_det_size(size)
    _require_empty(root)
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub))
    kind = "labelimg" if labelimg else "voc"
    numbers = range(1, num_trainval + num_test + 1)
    ids = [f"img_{i:04d}" if labelimg else f"{i:06d}" for i in numbers]
    names = Counter()
    for index, image_id in enumerate(ids):
        image, objects = _detection_image(_rng(seed, kind, index), height, width)
        file_name = image_id + (".png" if labelimg and index % 3 == 1 else ".jpg")
        _save(image, os.path.join(root, "JPEGImages", file_name))
        xml_path = os.path.join(root, "Annotations", image_id + ".xml")
        _write_voc_xml(xml_path, file_name, objects, height, width, labelimg)
        names.update(TOY_CLASSES[obj["label"]] for obj in objects)
    trainval = ids[:num_trainval]
    splits = {"trainval": trainval, "test": ids[num_trainval:]}
    if not labelimg:
        # VOC's train and val halve trainval; alternating keeps both non-empty for tiny counts.
        splits.update(train=trainval[0::2], val=trainval[1::2])
    for split, split_ids in splits.items():
        with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.writelines(image_id + "\n" for image_id in split_ids)
    counts = {f"num_{split}": len(split_ids) for split, split_ids in splits.items()}
    if not labelimg:
        return dict(root=root, classes=list(TOY_CLASSES), **counts, num_objects=sum(names.values()))
    return dict(root=root, classes=list(LABELIMG_CLASSES), **counts, num_png=len(ids[1::3]),
                objects_per_name=dict(sorted(names.items())))


def make_coco(root, seed=0, num_train=120, num_val=40, size=(192, 256)):
    """Write COCO-style `root/{train,val}2017/*.jpg` and `root/annotations/instances_*2017.json`."""
    height, width = _check_det_size(size)
    _require_empty(root)
    os.makedirs(os.path.join(root, "annotations"))
    categories = [
        {"supercategory": "shape", "id": cat_id, "name": name}
        for cat_id, name in zip(TOY_COCO_CATEGORY_IDS, TOY_CLASSES)
    ]
    written = {"root": root}
    # Image and annotation ids are unique across splits, as in real COCO.
    image_id, ann_id = 0, 0
    for split, split_id, count in (("train2017", 0, num_train), ("val2017", 1, num_val)):
        image_dir = os.path.join(root, split)
        os.makedirs(image_dir)
        images, annotations = [], []
        for i in range(count):
            image_id += 1
            image, objects = _detection_image(_rng(seed, "coco", split_id, i), height, width)
            file_name = f"{image_id:012d}.jpg"
            _save(image, os.path.join(image_dir, file_name))
            images.append(
                dict(license=1, file_name=file_name, height=height, width=width, id=image_id)
            )
            for obj in objects:
                ann_id += 1
                x0, y0, x1, y1 = obj["box"]
                annotations.append(
                    {
                        # A ring's hole cannot be expressed as a COCO polygon; its area (the
                        # drawn pixel count) does exclude the hole, like COCO's mask areas.
                        "segmentation": [obj["polygon"].ravel().tolist()],
                        "area": float(obj["mask"].sum()),
                        "iscrowd": 0,
                        "image_id": image_id,
                        "bbox": [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)],
                        "category_id": TOY_COCO_CATEGORY_IDS[obj["label"]],
                        "id": ann_id,
                    }
                )
        dataset = {
            "info": {"description": "resnet_det toy shapes", "version": "1.0"},
            "licenses": [{"id": 1, "name": "CC0 1.0", "url": _CC0_URL}],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        json_path = os.path.join(root, "annotations", f"instances_{split}.json")
        with open(json_path, "w") as f:
            json.dump(dataset, f)
        short = split[: -len("2017")]
        written.update({f"{short}_json": json_path, f"{short}_images": image_dir,
                        f"num_{short}": count, f"num_{short}_annotations": len(annotations)})
    return written


def _rng(seed, kind, *keys):
    # One generator per image: a file depends only on (seed, kind, split, index), not on counts.
    return np.random.default_rng((seed, _STREAM[kind], *keys))


def _require_empty(root):
    # Refuse rather than delete: stale files from an earlier run would silently join the dataset.
    if os.path.isdir(root) and os.listdir(root):
        raise FileExistsError(
            f"{root} exists and is not empty: remove it or choose another out_dir"
        )


def _check_det_size(size):
    height, width = (int(v) for v in size)
    if min(height, width) < 48:
        raise ValueError(
            f"det_size={tuple(size)} is too small to draw shapes; use at least (48, 48)"
        )
    return height, width


def _save(image, path):
    # The format follows the file's extension; PNG ignores the JPEG quality.
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)


def _on_circle(angles):
    return np.stack([np.cos(angles), np.sin(angles)], 1)


_CIRCLE = _on_circle(np.linspace(0, 2 * math.pi, 32, endpoint=False))
_A, _B = 0.3, 1.0
# The polygons of each class at circumradius 1; a ring's second one is its hole, which the
# even-odd fill leaves empty.
_UNIT_SHAPES = {
    "circle": [_CIRCLE],
    "square": [_on_circle(np.deg2rad([45, 135, 225, 315]))],
    "triangle": [_on_circle(np.deg2rad([90, 210, 330]))],
    "cross": [np.array([[_A, _B], [-_A, _B], [-_A, _A], [-_B, _A], [-_B, -_A], [-_A, -_A],
                        [-_A, -_B], [_A, -_B], [_A, -_A], [_B, -_A], [_B, _A], [_A, _A]])],
    "ring": [_CIRCLE, _CIRCLE * 0.55],
}


def _shape_polygons(label, radius, angle, cx, cy):
    """Vertices of shape `label` with circumradius `radius`; the first polygon is the outline."""
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    # Round once here so the drawn pixels, the stored polygon and the box share one geometry.
    return [_round(p @ rotation.T * radius + (cx, cy)) for p in _UNIT_SHAPES[TOY_CLASSES[label]]]


def _round(points):
    # "+ 0.0" turns -0.0 into 0.0 so that it is not written as "-0.0".
    return np.round(points, 2) + 0.0


def _rasterize(polys, height, width):
    """Boolean mask of the pixels whose centres lie inside `polys` (even-odd rule)."""
    edges_from = np.concatenate(polys)
    edges_to = np.concatenate([np.roll(p, -1, axis=0) for p in polys])
    x0, y0 = np.floor(edges_from.min(0)).astype(int).clip(0, (width, height))
    x1, y1 = np.ceil(edges_from.max(0)).astype(int).clip(0, (width, height))
    mask = np.zeros((height, width), dtype=bool)
    py, px = np.mgrid[y0:y1, x0:x1] + 0.5
    px, py = px.ravel()[:, None], py.ravel()[:, None]
    (ax, ay), (bx, by) = edges_from.T, edges_to.T
    spans = (ay > py) != (by > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = ax + (py - ay) * (bx - ax) / (by - ay)
    inside = (np.count_nonzero(spans & (px < crossing_x), axis=1) % 2).astype(bool)
    mask[y0:y1, x0:x1] = inside.reshape(y1 - y0, x1 - x0)
    return mask


def _clip_polygon(poly, width, height):
    """Sutherland-Hodgman clip of `poly` to the image rectangle [0, width] x [0, height]."""
    planes = ((0, 0, False), (0, width, True), (1, 0, False), (1, height, True))
    for axis, limit, keep_below in planes:
        inside = poly[:, axis] <= limit if keep_below else poly[:, axis] >= limit
        clipped = []
        for i in range(len(poly)):
            cur, nxt = poly[i], poly[(i + 1) % len(poly)]
            if inside[i]:
                clipped.append(cur)
            if inside[i] != inside[(i + 1) % len(poly)]:
                t = (limit - cur[axis]) / (nxt[axis] - cur[axis])
                point = cur + t * (nxt - cur)
                point[axis] = limit
                clipped.append(point)
        poly = np.array(clipped)
    return _round(poly)


def _background(rng, height, width):
    """A random textured background (low-frequency noise, stripes or a gradient) as float RGB."""
    colors = rng.uniform(0, 255, size=(2, 3))
    kind = rng.integers(3)
    if kind == 0:
        grid = rng.uniform(-60, 60, size=(int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3))
        # PIL's "F" images are single channel, so upsample the coarse noise one channel at a time.
        channels = [Image.fromarray(grid[..., c].astype(np.float32)) for c in range(3)]
        blobs = np.stack(
            [np.asarray(c.resize((width, height), Image.BICUBIC)) for c in channels], axis=-1
        )
        image = colors[0] + blobs
    else:
        yy, xx = np.mgrid[0:height, 0:width]
        theta = rng.uniform(0, math.pi)
        along = xx * math.cos(theta) + yy * math.sin(theta)
        if kind == 1:
            period = rng.uniform(0.05, 0.25) * min(height, width)
            t = 0.5 + 0.5 * np.sin(2 * math.pi * along / period + rng.uniform(0, 2 * math.pi))
        else:
            t = (along - along.min()) / max(along.max() - along.min(), 1e-6)
        image = colors[0] + t[..., None] * (colors[1] - colors[0])
    return image + rng.normal(0, rng.uniform(2, 20), size=(height, width, 3))


def _paint(rng, image, mask):
    """Fill `mask` with a random colour that stands out from the background underneath it."""
    local = image[mask].mean(0)
    candidates = rng.uniform(0, 255, size=(8, 3))
    distance = np.linalg.norm(candidates - local, axis=1)
    # The first contrasting candidate keeps colours varied; the farthest one is the fallback.
    contrasting = np.flatnonzero(distance >= 100)
    color = candidates[contrasting[0] if len(contrasting) else distance.argmax()]
    image[mask] = color + rng.normal(0, 6, size=(int(mask.sum()), 3))


def _to_uint8(image):
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _classification_image(rng, label, size):
    image = _background(rng, size, size)
    radius = rng.uniform(0.2, 0.42) * size
    cx, cy = rng.uniform(radius, size - radius, size=2)
    polys = _shape_polygons(label, radius, rng.uniform(0, 2 * math.pi), cx, cy)
    _paint(rng, image, _rasterize(polys, size, size))
    return _to_uint8(image)


def _detection_image(rng, height, width, max_tries=50):
    """An image with 1-4 shapes whose boxes do not overlap, so no shape hides part of another.

    Each object: label, mask, polygon (outline clipped to the image), box (x0, y0, x1, y1)
    as absolute float pixels, truncated.
    """
    image = _background(rng, height, width)
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        for _ in range(max_tries):
            label = int(rng.integers(len(TOY_CLASSES)))
            # Log-uniform sizes give a spread of COCO small/medium objects.
            radius = math.exp(rng.uniform(math.log(0.06), math.log(0.22))) * min(height, width)
            cx, cy = rng.uniform((0, 0), (width, height))
            polys = _shape_polygons(label, radius, rng.uniform(0, 2 * math.pi), cx, cy)
            full = np.concatenate([polys[0].min(0), polys[0].max(0)])
            # The centre lies in the image and inside every outline, so the clip is never empty.
            outline = _clip_polygon(polys[0], width, height)
            box = np.concatenate([outline.min(0), outline.max(0)])
            visible = (box[2:] - box[:2]) / (full[2:] - full[:2])
            if visible.min() < _MIN_VISIBLE or (box[2:] - box[:2]).min() < _MIN_BOX_PX:
                continue
            # A 2-pixel gap keeps the boxes tight even after JPEG blurs the edges.
            if any(_boxes_overlap(box, other["box"], gap=2) for other in objects):
                continue
            mask = _rasterize(polys, height, width)
            _paint(rng, image, mask)
            objects.append({"label": label, "mask": mask, "polygon": outline,
                            "box": [float(v) for v in box], "truncated": bool(visible.min() < 1)})
            break
    return _to_uint8(image), objects


def _boxes_overlap(a, b, gap):
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _write_voc_xml(path, file_name, objects, height, width, labelimg):
    """A VOC annotation xml with the tags of VOC2007's files, or of LabelImg's."""
    children = [("folder", "JPEGImages" if labelimg else "VOC2007"), ("filename", file_name)]
    if labelimg:
        # LabelImg records where the image was when it was labelled, on that machine.
        children.append(("path", os.path.join("/home/labeller/photos", file_name)))
    children += [
        ("source", [("database", "Unknown" if labelimg else "resnet_det toy shapes")]),
        ("size", [("width", width), ("height", height), ("depth", 3)]),
        ("segmented", 0),
    ]
    for obj in objects:
        x0, y0, x1, y1 = obj["box"]
        # VOC boxes are the 1-based indices of the first and last covered pixel, inclusive.
        bndbox = [("xmin", math.floor(x0) + 1), ("ymin", math.floor(y0) + 1),
                  ("xmax", math.ceil(x1)), ("ymax", math.ceil(y1))]
        children.append(("object", [
            ("name", TOY_CLASSES[obj["label"]]),
            ("pose", "Unspecified"),
            ("truncated", int(obj["truncated"])),
            ("difficult", 0),
            ("bndbox", bndbox),
        ]))
    root = _element("annotation", children)
    ET.indent(root, space="\t")
    # Real VOC files have no XML declaration.
    with open(path, "w", encoding="utf-8") as f:
        f.write(ET.tostring(root, encoding="unicode") + "\n")


def _element(tag, content):
    """An xml element whose `content` is its text, or a list of ``(tag, content)`` children."""
    node = ET.Element(tag)
    if isinstance(content, list):
        node.extend(_element(*child) for child in content)
    else:
        node.text = str(content)
    return node
