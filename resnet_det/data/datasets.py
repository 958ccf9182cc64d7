"""Detection dataset registration and validation for detectron2 (COCO json, PASCAL VOC xml):
detectron2's builtin names and the datasets a config registers (DATASETS.COCO_JSON_REGISTER,
DATASETS.VOC_REGISTER) all pass the same checks, tabled with their outcomes in docs/bad_inputs.md.
"""
import difflib
import functools
import json
import logging
import math
import os
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import builtin as d2_builtin
from detectron2.data.datasets.coco import load_coco_json
from detectron2.structures import BoxMode

from resnet_det.data.voc import read_voc_xml, voc_filename, voc_image_suffix, voc_number

__all__ = ["DatasetError", "register_all_datasets", "register_coco_json", "register_voc", "check_datasets",
           "dataset_class_names", "ground_truth", "split_datasets", "load_coco_json_checked",
           "load_voc_instances_checked", "sanitize_boxes", "set_strict", "is_strict"]

logger = logging.getLogger(__name__)

# Boxes that leave the image by no more than this are clipped silently: real COCO boxes
# overshoot the border by rounding (e.g. x + w = 640.01), which is not a data error.
CLIP_TOLERANCE_PX = 1.0
# How many offending files/fields one message lists before summarising the rest.
_MAX_LISTED = 10
_D2_ENV = "DETECTRON2_DATASETS"

_STATE = {"strict": False}
_LOCK = threading.Lock()
_WRAPPED_BUILTINS = set()
# name -> (kind, args) of the datasets this module registered, so re-registration is a no-op.
_REGISTERED = {}


class DatasetError(ValueError):
    """A dataset is missing, malformed or inconsistent; the message names each path and fix."""


def set_strict(strict):
    """Set whether loaders raise (True) or repair/skip with a counted warning (False)."""
    _STATE["strict"] = bool(strict)


def is_strict():
    """Whether dataset loaders currently raise on bad annotations (see :func:`set_strict`)."""
    return _STATE["strict"]


def register_all_datasets(cfg=None):
    """Register the datasets of `cfg` (DATASETS.COCO_JSON_REGISTER, DATASETS.VOC_REGISTER; a
    name registered again with other paths is replaced) and route detectron2's builtin COCO and
    VOC names through the checked loaders; `cfg` also sets DATASETS.STRICT. Safe to repeat."""
    with _LOCK:
        if cfg is not None:
            set_strict(cfg.DATASETS.get("STRICT", False))
            _register_config_entries(cfg.DATASETS)
        _wrap_builtins()


def register_coco_json(name, json_file, image_root):
    """Register a COCO-format json (COCO evaluator) loaded through :func:`load_coco_json_checked`.

    Re-registering the same name with the same paths is a no-op; other paths replace it.
    """
    args = (os.fspath(json_file), os.fspath(image_root))
    if not _claim(name, ("coco", args)):
        return
    DatasetCatalog.register(name, lambda: load_coco_json_checked(*args, dataset_name=name))
    MetadataCatalog.get(name).set(json_file=args[0], image_root=args[1], evaluator_type="coco")


def _register_config_entries(datasets_cfg):
    """Register the entries of DATASETS.COCO_JSON_REGISTER and DATASETS.VOC_REGISTER.

    VOC splits are evaluated with the all-point AP (VOC 2010+) unless the entry's optional fifth
    item is 2007 (VOC07's 11-point AP); the evaluator reports both AP50s. Malformed entries raise
    DatasetError showing the form.
    """
    for entry in datasets_cfg.get("COCO_JSON_REGISTER", []) or []:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise DatasetError(f"DATASETS.COCO_JSON_REGISTER entry {entry!r} is not "
                               "[name, json_file, image_root]; e.g. "
                               "DATASETS.COCO_JSON_REGISTER \"[['mine_train', 'ann.json', 'images/']]\"")
        register_coco_json(*(str(v) for v in entry))
    example = "DATASETS.VOC_REGISTER \"[['mine_train', 'data/mine', 'trainval', ['cat', 'dog']]]\""
    for entry in datasets_cfg.get("VOC_REGISTER", []) or []:
        if (
            not isinstance(entry, (list, tuple))
            or len(entry) not in (4, 5)
            or (len(entry) == 5 and entry[4] not in (2007, 2012))
            or not isinstance(entry[3], (list, tuple))
            or not entry[3]
            or not all(isinstance(c, str) and c.strip() for c in entry[3])
        ):
            raise DatasetError(f"DATASETS.VOC_REGISTER entry {entry!r} is not [name, dirname, split, "
                               f"[class names]] (optionally a fifth item: 2007 for VOC07's 11-point AP) with at "
                               f"least one class name; e.g. {example}")
        name, dirname, split, classes = entry[:4]
        duplicates = sorted(c for c, n in Counter(classes).items() if n > 1)
        if duplicates:
            raise DatasetError(f"DATASETS.VOC_REGISTER entry {name!r} lists class names twice: {duplicates}")
        register_voc(str(name), str(dirname), str(split), [str(c) for c in classes],
                     year=entry[4] if len(entry) == 5 else 2012)


def register_voc(name, dirname, split, class_names, year=2012):
    """Register a VOC-layout split (pascal_voc evaluator) loaded by load_voc_instances_checked.

    ``year`` 2007 evaluates with VOC07's 11-point AP, 2012 with the all-point AP.
    """
    class_names = tuple(class_names)
    args = (os.fspath(dirname), split, class_names)
    if not _claim(name, ("voc", args + (year,))):
        return
    DatasetCatalog.register(name, lambda: load_voc_instances_checked(*args))
    MetadataCatalog.get(name).set(thing_classes=list(class_names), dirname=args[0], year=year,
                                  split=split, evaluator_type="pascal_voc")


def _claim(name, key):
    """True when `name` must be (re-)registered with `key`; drops an older registration."""
    if _REGISTERED.get(name) == key and name in DatasetCatalog:
        return False
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
        # Metadata values cannot be overwritten in place; a new root needs a fresh entry.
        MetadataCatalog.remove(name)
    _REGISTERED[name] = key
    return True


def _builtin_coco_names():
    splits = d2_builtin._PREDEFINED_SPLITS_COCO
    return {name for group in ("coco", "coco_person") for name in splits.get(group, {})}


def _wrap_builtins():
    """Route detectron2's builtin COCO and VOC names through the checked loaders."""
    coco_names = _builtin_coco_names()
    for name in DatasetCatalog.list():
        if name in _WRAPPED_BUILTINS or name in _REGISTERED:
            continue
        meta = MetadataCatalog.get(name)
        if name in coco_names and hasattr(meta, "json_file"):
            loader = functools.partial(load_coco_json_checked, meta.json_file, meta.image_root, name)
        elif name.startswith("voc_") and getattr(meta, "evaluator_type", "") == "pascal_voc":
            loader = functools.partial(
                load_voc_instances_checked, meta.dirname, meta.split, tuple(meta.thing_classes)
            )
        else:
            continue
        DatasetCatalog.remove(name)
        DatasetCatalog.register(name, loader)
        _WRAPPED_BUILTINS.add(name)


# ---------------------------------------------------------------------------- problem log


class _Problems:
    """Collects (kind, where, detail) records; raises in strict mode or warns with counts."""

    def __init__(self, source, strict):
        self.source = source
        self.strict = strict
        self.items = defaultdict(list)

    def add(self, kind, where, detail):
        self.items[kind].append(f"{where}: {detail}")

    def __bool__(self):
        return bool(self.items)

    def format(self):
        lines = []
        for kind, entries in self.items.items():
            lines += [f"  {len(entries)} x {kind}", *_listed(entries, "    ")]
        return "\n".join(lines)

    def finish(self, action, fix):
        """Raise DatasetError in strict mode, else log one warning counting each kind."""
        if not self.items:
            return
        if self.strict:
            raise DatasetError(f"{self.source}: bad annotations (DATASETS.STRICT is True):\n{self.format()}\n"
                               f"Fix: {fix}, or set DATASETS.STRICT False to {action} them with a warning.")
        logger.warning(f"{self.source}: {action} {sum(map(len, self.items.values()))} bad annotations "
                       f"(set DATASETS.STRICT True to make this an error):\n{self.format()}")


def _listed(entries, indent):
    """The first _MAX_LISTED entries, one a line, then how many more there are."""
    more = [f"... and {len(entries) - _MAX_LISTED} more"] if len(entries) > _MAX_LISTED else []
    return [indent + e for e in entries[:_MAX_LISTED] + more]


def _fail(source, problems, fix):
    raise DatasetError(f"{source}:\n" + "\n".join(_listed(problems, "  ")) + f"\nFix: {fix}")


# ---------------------------------------------------------------------------- boxes


def sanitize_boxes(dataset_dicts, problems, describe=None):
    """Clip boxes to their image and drop non-finite, inverted or empty ones (in place).

    Each repair is recorded in `problems` (a :class:`_Problems`) under `describe(record)`
    (default: the image file name); boxes that overshoot the border by at most
    CLIP_TOLERANCE_PX pixels are clipped without a record.
    """
    for record in dataset_dicts:
        width, height = record["width"], record["height"]
        if describe is not None:
            source = describe(record)
        else:
            source = f"{record['file_name']} (image id {record.get('image_id')})"
        kept = []
        for index, ann in enumerate(record.get("annotations", [])):
            where = f"{source} object {index}"
            box = _to_xyxy(ann["bbox"], ann["bbox_mode"])
            x0, y0, x1, y1 = box
            if not all(math.isfinite(v) for v in box):
                problems.add("non-finite box (dropped)", where, f"bbox={ann['bbox']}")
                continue
            if x1 < x0 or y1 < y0:
                problems.add("inverted/negative-size box (dropped)", where, f"bbox={ann['bbox']}")
                continue
            clipped = [min(max(x0, 0.0), width), min(max(y0, 0.0), height),
                       min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                inside = x1 > 0 and y1 > 0 and x0 < width and y0 < height
                kind = "zero-area box (dropped)" if inside else "box outside the image (dropped)"
                problems.add(kind, where, f"bbox={ann['bbox']} in {width}x{height} image")
                continue
            if max(abs(a - b) for a, b in zip(box, clipped)) > CLIP_TOLERANCE_PX:
                problems.add("box crossing the image border (clipped)", where,
                             f"bbox={ann['bbox']} in {width}x{height} image")
            if clipped != box:
                ann = dict(ann, bbox=_from_xyxy(clipped, ann["bbox_mode"]))
            kept.append(ann)
        record["annotations"] = kept
    return dataset_dicts


def _to_xyxy(bbox, mode):
    # BoxMode.convert builds a tensor per call: minutes for COCO's 860k boxes; XYWH is done here.
    if mode == BoxMode.XYWH_ABS:
        x, y, w, h = (float(v) for v in bbox)
        return [x, y, x + w, y + h]
    return [float(v) for v in BoxMode.convert(list(bbox), mode, BoxMode.XYXY_ABS)]


def _from_xyxy(box, mode):
    if mode == BoxMode.XYWH_ABS:
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    return list(BoxMode.convert(list(box), BoxMode.XYXY_ABS, mode))


# ---------------------------------------------------------------------------- COCO


def read_json(path, what="annotation json"):
    """json.load `path`, raising DatasetError naming the file for missing or broken json."""
    if not os.path.isfile(path):
        raise DatasetError(f"{what} {path} does not exist")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{what} {path} is not valid json ({e}); re-export or re-download the file") from None


def _validate_coco(data, json_file, problems):
    """Check the COCO json structure; returns a repaired copy or None when nothing changed.

    Ambiguous structure (duplicate image or category ids, missing keys) always raises;
    annotation-level problems are recorded in `problems` and their annotations dropped.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"{json_file}: top level is {type(data).__name__}, expected a COCO object with "
                           "'images', 'annotations' and 'categories'")
    errors = []
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            errors.append(f"key '{key}' is missing or not a list")
    if "annotations" in data and not isinstance(data["annotations"], list):
        errors.append("key 'annotations' is not a list")
    if errors:
        _fail(json_file, errors, "write the file in COCO format (cocodataset.org/#format-data)")

    def duplicates(field):
        items = data.get(field, [])
        ids = [item.get("id") if isinstance(item, dict) else None for item in items]
        if None in ids:
            errors.append(f"{ids.count(None)} entries of '{field}' have no 'id'")
        counts = Counter(i for i in ids if i is not None)
        dup = sorted((i for i, n in counts.items() if n > 1), key=repr)
        if dup:
            errors.append(f"'{field}' has duplicate ids {dup[:_MAX_LISTED]}")

    duplicates("images")
    duplicates("categories")
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not {"id", "file_name"} <= image.keys():
            errors.append(f"images[{index}] lacks 'id' or 'file_name': {image!r:.200}")
    annotations = data.get("annotations", [])
    # detectron2 exempts COCO 2014 minival files, whose known duplicate ids are harmless.
    if "minival" not in os.path.basename(json_file):
        duplicates("annotations")
    if errors:
        _fail(json_file, errors, "give every image, category and annotation a unique 'id' "
              "(annotations refer to images and categories by id, so duplicates are ambiguous)")

    images = {}
    bad_images = set()
    for image in data["images"]:
        w, h = image.get("width"), image.get("height")
        if not (_is_number(w) and _is_number(h) and w > 0 and h > 0):
            problems.add("image without positive width/height (image skipped)",
                         f"{json_file} image id {image['id']} ({image['file_name']})",
                         f"width={w!r}, height={h!r}")
            bad_images.add(image["id"])
        images[image["id"]] = image
    category_ids = {c["id"] for c in data["categories"]}

    kept = []
    for index, ann in enumerate(annotations):
        ann_id = ann.get("id") if isinstance(ann, dict) else "?"
        where = f"{json_file} annotations[{index}] (id {ann_id})"
        if not isinstance(ann, dict):
            problems.add("annotation is not an object (dropped)", where, f"{ann!r:.100}")
            continue
        if ann.get("image_id") not in images:
            problems.add("annotation of a missing image (dropped)", where,
                         f"image_id={ann.get('image_id')!r} is not in 'images'")
            continue
        if ann.get("category_id") not in category_ids:
            problems.add("unknown category id (dropped)", where,
                         f"category_id={ann.get('category_id')!r} is not in 'categories' "
                         f"{sorted(category_ids)}")
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            problems.add("bbox is not 4 numbers (dropped)", where, f"bbox={bbox!r:.100}")
            continue
        kept.append(ann)

    if len(kept) == len(annotations) and not bad_images:
        return None
    repaired = dict(data)
    repaired["images"] = [im for im in data["images"] if im["id"] not in bad_images]
    repaired["annotations"] = [a for a in kept if a["image_id"] not in bad_images]
    return repaired


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_coco_json_checked(json_file, image_root, dataset_name=None, strict=None):
    """detectron2's `load_coco_json` after validating the json and sanitising the boxes.

    Broken json, duplicate ids and missing keys raise DatasetError naming the file; bad
    annotations are dropped with one counted warning, or raise when `strict` (default: the
    DATASETS.STRICT setting).
    """
    strict = is_strict() if strict is None else strict
    json_file = os.fspath(json_file)
    problems = _Problems(json_file, strict)
    repaired = _validate_coco(read_json(json_file), json_file, problems)
    if repaired is None:
        dicts = load_coco_json(json_file, image_root, dataset_name)
    else:
        # load_coco_json reads a path; hand it the repaired copy in a private temp file.
        # The same base name: detectron2 recognises minival files by it.
        tmp = tempfile.TemporaryDirectory(prefix="resnet_det_coco_", ignore_cleanup_errors=True)
        with tmp as tmp_dir:
            tmp_json = os.path.join(tmp_dir, os.path.basename(json_file))
            with open(tmp_json, "w") as f:
                json.dump(repaired, f)
            dicts = load_coco_json(tmp_json, image_root, dataset_name)
    sanitize_boxes(dicts, problems)
    problems.finish("dropped or repaired", f"correct the listed entries in {json_file}")
    return dicts


# ---------------------------------------------------------------------------- VOC


def read_split_ids(path) -> list[str]:
    """Image ids listed one per line in a VOC ImageSets file (blank lines ignored)."""
    if not os.path.isfile(path):
        raise DatasetError(f"VOC split file {path} does not exist")
    with open(path) as f:
        # Not np.loadtxt (as detectron2 uses): a one-line file would become a 0-d array.
        return [line.split()[0] for line in f if line.strip()]


def load_voc_instances_checked(dirname, split, class_names, strict=None):
    """Load a VOC split like detectron2's `load_voc_instances`, validating each xml file.

    Output matches detectron2's loader on clean data (XYXY_ABS, 0-based xmin/ymin). The image
    is ``JPEGImages/<id><ext>``, ``<ext>`` the .jpg/.jpeg/.png of the xml's ``<filename>``
    (.jpg when it names none). Objects of classes outside `class_names`, broken objects and
    broken files are skipped with a counted warning, or raise when `strict` (default:
    DATASETS.STRICT).
    """
    strict = is_strict() if strict is None else strict
    class_names = list(class_names)
    split_file = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    problems = _Problems(f"VOC {dirname} split '{split}'", strict)
    dicts = []
    for file_id in read_split_ids(split_file):
        record = _parse_voc_xml(dirname, file_id, class_names, problems)
        if record is not None:
            dicts.append(record)
    annotations_dir = os.path.join(dirname, "Annotations")
    sanitize_boxes(dicts, problems, describe=lambda r: os.path.join(annotations_dir, r["image_id"] + ".xml"))
    fix = "correct the listed xml files"
    if any(kind.startswith("object of unknown class") for kind in problems.items):
        fix += (" (an unknown class: correct its <name> tags, or register the dataset with it "
                f"in the class list, now {class_names})")
    problems.finish("skipped or repaired", fix)
    return dicts


def _parse_voc_xml(dirname, file_id, class_names, problems):
    """The detectron2 dataset record of image `file_id` from its VOC xml, or None."""
    xml_path = os.path.join(dirname, "Annotations", file_id + ".xml")
    try:
        xml = read_voc_xml(xml_path)
    except FileNotFoundError:
        problems.add("missing annotation file (image skipped)", xml_path, "file not found")
        return None
    except ET.ParseError as e:
        problems.add("xml that does not parse (image skipped)", xml_path, str(e))
        return None
    size = {}
    for field in ("width", "height"):
        value = voc_number(xml[field])
        if value is None or value <= 0 or value != int(value):
            problems.add("missing or non-numeric image size (image skipped)", xml_path,
                         f"<size><{field}> is {xml[field]!r}")
            return None
        size[field] = int(value)
    instances = []
    for index, obj in enumerate(xml["objects"]):
        where, name = f"{xml_path} <object> #{index}", obj["name"]
        if not name:
            problems.add("object without <name> (dropped)", where, "no <name> tag")
        elif name not in class_names:
            # One kind per name: the warning then counts the objects of each unknown name.
            problems.add(f"object of unknown class '{name}' (dropped)", where, f"class '{name}'")
        elif obj["box"] is None:
            problems.add("object without <bndbox> (dropped)", where, f"class '{name}'")
        else:
            box = [voc_number(text) for text in obj["box"].values()]
            bad = [tag for tag, v in zip(obj["box"], box) if v is None]
            if bad:
                problems.add("missing or non-numeric box coordinate (object dropped)", where,
                             f"<bndbox><{bad[0]}> is {obj['box'][bad[0]]!r}")
                continue
            # VOC coordinates are 1-based inclusive pixel indices; as in detectron2,
            # (xmin=1, xmax=W) becomes the continuous box (0, W).
            box[0] -= 1.0
            box[1] -= 1.0
            instances.append({"category_id": class_names.index(name), "bbox": box, "bbox_mode": BoxMode.XYXY_ABS})
    return {"height": size["height"], "width": size["width"], "annotations": instances, "image_id": file_id,
            "file_name": os.path.join(dirname, "JPEGImages", file_id + voc_image_suffix(xml["filename"]))}


# ---------------------------------------------------------------------------- check


def check_datasets(names):
    """Check that each named dataset's files exist; raise one DatasetError listing all problems.

    Looks at the root folder, annotation json / VOC split and xml files, and every image
    file (one directory listing per image folder, so 118k COCO images take about a second).
    """
    if isinstance(names, str):
        names = [names]
    registered = DatasetCatalog.list()
    problems = []
    for name in names:
        if name not in registered:
            close = difflib.get_close_matches(name, registered, n=5, cutoff=0.5)
            problems.append(f"dataset '{name}' is not registered; close names: {close or 'none'}. "
                            "Register your own COCO json with DATASETS.COCO_JSON_REGISTER "
                            "[[name, json_file, image_root]] or VOC-layout folder with "
                            "DATASETS.VOC_REGISTER [[name, dirname, split, [class, ...]]]")
            continue
        meta = MetadataCatalog.get(name)
        if hasattr(meta, "json_file") and hasattr(meta, "image_root"):
            problems.extend(_check_coco(name, meta.json_file, meta.image_root))
        elif hasattr(meta, "dirname") and hasattr(meta, "split"):
            problems.extend(_check_voc(name, meta.dirname, meta.split))
        # Datasets registered by other code, without file metadata, are left to their loader.
    if problems:
        raise DatasetError(f"dataset check failed ({len(problems)} problems):\n"
                           + "\n".join(f"- {p}" for p in problems))


def _root_hint(name):
    """How to fix a missing path for `name`: which environment variable roots it."""
    if name in _builtin_coco_names() or name.startswith("voc_"):  # detectron2's builtin names
        root = os.environ.get(_D2_ENV, "datasets")
        layout = ("coco/{train2017,val2017}/ and coco/annotations/instances_{train,val}2017.json"
                  if name.startswith("coco")
                  else "VOC2007/ or VOC2012/ with Annotations/, ImageSets/Main/ and JPEGImages/")
        return (
            f"set {_D2_ENV} to the folder holding {layout} "
            f"(now {_D2_ENV}={root!r}, resolved to {os.path.abspath(root)})"
        )
    return (
        "correct the paths given in DATASETS.COCO_JSON_REGISTER or DATASETS.VOC_REGISTER "
        "(or where the dataset was registered)"
    )


def _check_coco(name, json_file, image_root):
    hint = _root_hint(name)
    problems = []
    if not os.path.isfile(json_file):
        problems.append(f"{name}: annotation json {json_file} does not exist; {hint}")
    if not os.path.isdir(image_root):
        problems.append(f"{name}: image folder {image_root} does not exist; {hint}")
    if problems:
        return problems
    try:
        data = read_json(json_file)
        # Structure errors (duplicate ids, missing keys) raise here; repairs are the loader's.
        _validate_coco(data, json_file, _Problems(json_file, strict=False))
    except DatasetError as e:
        return [f"{name}: {e}"]
    files = [os.path.join(image_root, im["file_name"]) for im in data["images"]]
    return _missing_files(name, files, "image", hint)


def _check_voc(name, dirname, split):
    hint = _root_hint(name)
    if not os.path.isdir(dirname):
        return [f"{name}: VOC folder {dirname} does not exist; {hint}"]
    # A missing Annotations/ or JPEGImages/ shows as all of its files missing, below.
    split_file = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    if not os.path.isfile(split_file):
        return [f"{name}: split file {split_file} does not exist; {hint}"]
    ids = read_split_ids(split_file)
    if not ids:
        return [f"{name}: split file {split_file} lists no images"]
    xmls = [os.path.join(dirname, "Annotations", i + ".xml") for i in ids]
    missing_xml = _missing_files(name, xmls, "annotation", hint)
    images = [os.path.join(dirname, "JPEGImages", i + voc_image_suffix(voc_filename(xml)))
              for i, xml in zip(ids, xmls)]
    return missing_xml + _missing_files(name, images, "image", hint)


def _missing_files(name, paths, what, hint):
    """Paths (grouped by folder, one os.scandir each) that are not existing files."""
    by_dir = defaultdict(list)
    for path in paths:
        by_dir[os.path.dirname(path)].append(os.path.basename(path))
    missing = []
    for folder, basenames in by_dir.items():
        try:
            with os.scandir(folder) as it:
                present = {e.name for e in it if e.is_file()}
        except FileNotFoundError:
            present = set()
        missing.extend(os.path.join(folder, b) for b in basenames if b not in present)
    if not missing:
        return []
    listed = ", ".join(_listed(missing, ""))
    return [f"{name}: {len(missing)} of {len(paths)} {what} files are missing: {listed}; {hint}"]


def dataset_class_names(cfg) -> list[str] | None:
    """The class names of ``cfg``'s test (else train) dataset, in contiguous-id order (registers
    the config's datasets first); None when no dataset names them."""
    register_all_datasets(cfg)
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        meta = MetadataCatalog.get(name)
        if meta.get("thing_classes", None):
            return list(meta.thing_classes)
        json_file = meta.get("json_file", None)
        if json_file and os.path.isfile(json_file):
            # COCO metadata is filled only when the dataset is loaded; detectron2 maps category
            # ids to contiguous ids in sorted-id order, so read the names likewise.
            categories = read_json(json_file).get("categories", [])
            return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    return None


def split_datasets(cfg, split) -> list[str]:
    """DATASETS.TRAIN (``split`` "train") or DATASETS.TEST ("test"), registered and checked."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    names = list(cfg.DATASETS.TRAIN if split == "train" else cfg.DATASETS.TEST)
    register_all_datasets(cfg)
    check_datasets(names)
    return names


def ground_truth(record) -> tuple[list, list]:
    """``(boxes xyxy, class ids)`` of a dataset record's non-crowd annotations."""
    anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
    return boxes, [a["category_id"] for a in anns]
