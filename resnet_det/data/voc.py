"""PASCAL VOC xml annotations (VOC's own files and what LabelImg or CVAT write), read in one place
for the training loader (:mod:`resnet_det.data.datasets`) and the VOC evaluator."""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET

__all__ = ["BOX_TAGS", "read_voc_xml", "voc_filename", "voc_image_suffix", "voc_number"]

BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def voc_number(text) -> float | None:
    """A VOC xml number (``"12"``, ``"12.5"``), or None when missing, non-numeric or not finite."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_voc_xml(path) -> dict:
    """The fields of a VOC xml as written (texts, stripped): ``filename``, ``width``,
    ``height`` and ``objects``, each ``{"name", "box": {tag: text} or None, "pose",
    "truncated", "difficult"}``. Other tags (folder, path, source, part, ...) are ignored, as
    detectron2 ignores them. Raises FileNotFoundError or ``xml.etree.ElementTree.ParseError``."""
    root = ET.parse(path).getroot()
    objects = []
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        objects.append({"name": (obj.findtext("name") or "").strip(),
                        "box": None if box is None else {tag: box.findtext(tag) for tag in BOX_TAGS},
                        **{tag: obj.findtext(tag) for tag in ("pose", "truncated", "difficult")},})
    return {"filename": root.findtext("filename"), "width": root.findtext("size/width"),
            "height": root.findtext("size/height"), "objects": objects}


def voc_image_suffix(filename) -> str:
    """The image file's extension from a VOC xml's <filename> text: as written when it is
    .jpg/.jpeg/.png (any case), else .jpg (detectron2's assumption for VOC)."""
    suffix = os.path.splitext((filename or "").strip())[1]
    return suffix if suffix.lower() in (".jpg", ".jpeg", ".png") else ".jpg"


def voc_filename(xml_path) -> str | None:
    """The <filename> text of a VOC xml, or None when the file is missing or broken (the
    loader reports those)."""
    try:
        # iterparse stops at <filename>, near the top, instead of building the whole tree.
        for _, element in ET.iterparse(xml_path):
            if element.tag == "filename":
                return element.text
    except (OSError, ET.ParseError):
        pass
    return None
