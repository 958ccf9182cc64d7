"""Deterministic toy shape datasets in the ImageNet, PASCAL VOC and COCO layouts, for tests, the
main job and the docs (``tools/make_toy_data.py``), and the config entries that register them."""
import json
import os

from projects.toy_data.shapes import (
    KINDS,
    LABELIMG_CLASSES,
    TOY_CLASSES,
    TOY_COCO_CATEGORY_IDS,
    make_classification_tree,
    make_coco,
    make_toy_data,
    make_voc,
)

__all__ = ["KINDS", "LABELIMG_CLASSES", "TOY_CLASSES", "TOY_COCO_CATEGORY_IDS", "dataset_opts",
           "make_classification_tree", "make_coco", "make_toy_data", "make_voc", "register_toy_datasets"]


def dataset_opts(root) -> list[str]:
    """Config overrides (``KEY VALUE`` pairs) that register the toy datasets under ``root`` as
    the toy configs name them: ``toy_coco_{train,val}`` and ``toy_voc_{trainval,test}`` (VOC07's
    11-point AP). configs/toy/ registers the same names under ``datasets/toy``."""
    coco, voc = os.path.join(root, "coco"), os.path.join(root, "VOC2007")
    return [
        "DATASETS.COCO_JSON_REGISTER",
        json.dumps([[f"toy_coco_{s}", os.path.join(coco, "annotations", f"instances_{s}2017.json"),
                     os.path.join(coco, f"{s}2017")] for s in ("train", "val")]),
        "DATASETS.VOC_REGISTER",
        json.dumps([[f"toy_voc_{s}", voc, s, list(TOY_CLASSES), 2007] for s in ("trainval", "test")]),
    ]


def register_toy_datasets(root) -> None:
    """Register the toy datasets under ``root`` (as :func:`dataset_opts` names them) with detectron2."""
    from resnet_det.config import get_cfg
    from resnet_det.data.datasets import register_all_datasets

    cfg = get_cfg()
    cfg.merge_from_list(dataset_opts(root))
    register_all_datasets(cfg)
