"""Weights for detectron2 models. ``MODEL.WEIGHTS`` may be (a) a backbone file of
:func:`~resnet_det.checkpoint.save_backbone`, mapped onto the detector (C4: res5 to
``roi_heads.res5``; FPN: ``backbone.bottom_up``; VGG-16: fc6/fc7 to ``roi_heads.box_head``) after
its recorded architecture and input normalisation are checked against the config; (b) a
torchvision ResNet/VGG-16 state dict (renamed, then as (a)); (c) a detector checkpoint.
``.pkl`` files are refused with the command that converts them once (:func:`convert_pickle_weights`).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names, convert_c2_detectron_names
from fvcore.common.checkpoint import _IncompatibleKeys

from resnet_det.checkpoint.backbone_file import BACKBONE_FORMAT, CLASSIFIER_PREFIXES, backbone_metadata
from resnet_det.checkpoint.checkpointer import SafeCheckpointer
from resnet_det.checkpoint.io import load_state_dict_checked, save_safetensors
from resnet_det.checkpoint.torchvision import from_torchvision, is_torchvision_resnet, is_torchvision_vgg16
from resnet_det.models import architecture
from resnet_det.models.resnet import RESNET_SPECS, STAGE_NAMES, STEM_CHANNELS, resnet_arch

__all__ = ["WeightsMismatchError", "ResNetDetCheckpointer", "backbone_key_targets", "check_backbone_metadata",
           "convert_pickle_weights", "infer_resnet_depth"]

logger = logging.getLogger(__name__)

# Top-level modules of detectron2's GeneralizedRCNN: a state dict with these is a detector.
DETECTOR_PREFIXES = ("backbone.", "proposal_generator.", "roi_heads.")
# Where backbone-file keys can land in a detector, tried in this order: C4 puts res5 under
# roi_heads, FPN everything under backbone.bottom_up, VGG-16 fc6/fc7 under roi_heads.box_head.
TARGET_PREFIXES = ("backbone.", "backbone.bottom_up.", "roi_heads.", "roi_heads.box_head.")
# Parts of a detector that a backbone file does not provide (randomly initialised heads).
HEAD_PREFIXES = ("proposal_generator.", "roi_heads.box_predictor.", "roi_heads.box_head.", "roi_heads.mask_head.",
                 "roi_heads.keypoint_head.", "backbone.fpn_", "backbone.top_block.")
DETECTOR_FORMAT = "detectron2.model"
_BN_EPS = 1e-5  # detectron2's (and torch's) BN/FrozenBN epsilon
_BN_FAMILY = {"BN": "BN", "SyncBN": "BN", "FrozenBN": "BN", "GN": "GN"}
_STAGE_BLOCK = re.compile(r"(res[2-5])\.(\d+)\.")
_STAGE_PREFIXES = tuple(s + "." for s in STAGE_NAMES)


class WeightsMismatchError(ValueError):
    """A weights file was made for another architecture or input normalisation than the config."""


def infer_resnet_depth(state_dict) -> int | None:
    """The depth (18..152) of a ResNet state dict in this package's names, from its block
    counts and block type; None if the keys do not form one of Table 1's networks."""
    blocks = {}
    for key in state_dict:
        m = _STAGE_BLOCK.match(key)
        if m:
            blocks[m[1]] = max(blocks.get(m[1], 0), int(m[2]) + 1)
    counts = tuple(blocks.get(s, 0) for s in STAGE_NAMES)
    kind = "bottleneck" if any(".conv3." in k for k in state_dict) else "basic"
    for depth, spec in RESNET_SPECS.items():
        if spec == (kind, counts):
            return depth
    return None


def _origin_metadata(state_dict, torchvision: bool, norm="BN") -> dict:
    """The record a foreign backbone's origin implies for it (in this package's names):
    torchvision's are RGB with its mean/std and put the stride in the 3x3, MSRA/Caffe2's are BGR
    and put it in the first 1x1."""
    if torchvision and "conv1_1.weight" in state_dict:
        arch = {"name": "vgg16"}
    elif "stem.conv1.weight" in state_dict:
        arch = resnet_arch(infer_resnet_depth(state_dict), norm=norm, stride_in_1x1=not torchvision,
                           width=int(state_dict["stem.conv1.weight"].shape[0]))
    else:
        return {"format": BACKBONE_FORMAT}  # unknown layout: the loader reports its keys
    return backbone_metadata(arch, msra=not torchvision)


def check_backbone_metadata(model, meta: dict, source: str) -> None:
    """Raise :class:`WeightsMismatchError` naming the config key where ``meta`` (a backbone
    file's record) disagrees with ``model`` (built from the config)."""
    problems = []
    arch, file_arch = architecture(model), meta.get("arch") or {}
    if arch is not None and file_arch:
        if arch["name"] != file_arch.get("name"):
            problems.append(f"MODEL.BACKBONE.NAME builds a {arch['name']} backbone, the file holds "
                            f"{file_arch.get('name')}")
        elif arch["name"] == "resnet":
            fields = ["depth", "shortcut", "plain"]  # each is the config key MODEL.RESNETS.<FIELD>
            if RESNET_SPECS.get(arch["depth"], ("",))[0] == "bottleneck":
                fields.append("stride_in_1x1")  # basic blocks have no 1x1 to stride
            for field in fields:
                if file_arch.get(field) is not None and file_arch[field] != arch[field]:
                    problems.append(f"MODEL.RESNETS.{field.upper()} is {arch[field]!r}, the file was "
                                    f"trained with {file_arch[field]!r}")
            # Files written before the width was recorded hold the paper's.
            file_width = file_arch.get("width", STEM_CHANNELS)
            if file_width != arch["width"]:
                problems.append(f"MODEL.RESNETS.STEM_OUT_CHANNELS is {arch['width']}, "
                                f"the file was trained with {file_width}")
            file_norm = _BN_FAMILY.get(file_arch.get("norm"))
            if file_norm and file_norm != _BN_FAMILY.get(arch["norm"]):
                problems.append(f"MODEL.RESNETS.NORM is {arch['norm']!r}, the file has "
                                f"{file_arch['norm']!r} layers (BN, SyncBN and FrozenBN share weights; GN "
                                "does not)")
    fmt = getattr(model, "input_format", None)
    if "input_format" in meta and fmt is not None and meta["input_format"] != fmt:
        problems.append(f"INPUT.FORMAT is {fmt!r}, the file expects {meta['input_format']!r}")
    for key, field in (("MODEL.PIXEL_MEAN", "pixel_mean"), ("MODEL.PIXEL_STD", "pixel_std")):
        buffer = getattr(model, field, None)
        if field in meta and buffer is not None:
            ours = buffer.detach().flatten().cpu().tolist()
            theirs = [float(v) for v in meta[field]]
            if len(ours) != len(theirs) or any(abs(a - b) > 1e-3 for a, b in zip(ours, theirs)):
                problems.append(f"{key} is {ours}, the file expects {theirs}")
    if problems:
        normalisation = any(p.startswith(("INPUT.FORMAT", "MODEL.PIXEL")) for p in problems)
        raise WeightsMismatchError(
            f"{source} does not fit the config:\n"
            + "\n".join(f"  {p}" for p in problems)
            + "\nChange these config keys to the file's values"
            + (f" (normalisation: INPUT.FORMAT {meta.get('input_format')} MODEL.PIXEL_MEAN "
               f"\"{list(meta.get('pixel_mean', []))}\" MODEL.PIXEL_STD \"{list(meta.get('pixel_std', []))}\")"
               if normalisation else "")
            + ", or use weights made for this architecture."
        )


def backbone_key_targets(backbone_state, model_state):
    """``(mapped, unmatched)``: backbone-file keys renamed to the detector keys they fill
    (first of :data:`TARGET_PREFIXES` that exists in ``model_state``), and keys that fit nowhere.
    BN's ``num_batches_tracked`` is dropped where the detector has FrozenBN (no such buffer)."""
    mapped, unmatched = {}, []
    for key, value in backbone_state.items():
        target = next((p + key for p in TARGET_PREFIXES if p + key in model_state), None)
        if target is not None:
            mapped[target] = value
        elif not key.endswith("num_batches_tracked"):
            unmatched.append(key)
    return mapped, unmatched


class ResNetDetCheckpointer(SafeCheckpointer, DetectionCheckpointer):
    """detectron2's checkpointer with :class:`SafeCheckpointer`'s safe loading, atomic saves
    and pruning, plus backbone-file mapping and metadata checks (see module doc)."""

    def _load_model(self, checkpoint):
        meta = checkpoint.pop("__resnet_det_meta__", None)
        state = checkpoint["model"]
        if (meta or {}).get("format") == DETECTOR_FORMAT or any(k.startswith(DETECTOR_PREFIXES) for k in state):
            incompatible = DetectionCheckpointer._load_model(self, checkpoint)
        else:
            incompatible = self._load_backbone(state, meta)
        # Missing/unexpected keys of the last load (also logged), for callers and tests.
        self.incompatible_keys = incompatible
        return incompatible

    def _load_backbone(self, state, meta):
        source = getattr(self, "_source", "weights file")
        if is_torchvision_resnet(state) or is_torchvision_vgg16(state):
            state = from_torchvision(state)
            meta = _origin_metadata(state, torchvision=True)
            logger.info(f"{source}: torchvision weights, renamed to this package's layout")
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
        if meta is None:
            logger.warning(f"{source} carries no resnet_det metadata: its architecture and input "
                           "normalisation cannot be checked against the config")
        else:
            if meta.get("format") != BACKBONE_FORMAT:
                raise WeightsMismatchError(
                    f"{source}: metadata format {meta.get('format')!r} is not "
                    f"{BACKBONE_FORMAT!r} (a backbone file of resnet_det.checkpoint.save_backbone)"
                )
            check_backbone_metadata(self.model, meta, source)
        mapped, unmatched = backbone_key_targets(state, self.model.state_dict())
        # A backbone file must fill the whole backbone; only detection heads may stay random.
        # Keys with no place in the model are passed on so that they are reported.
        try:
            missing = load_state_dict_checked(self.model, {**mapped, **{k: state[k] for k in unmatched}},
                                              allow_missing=HEAD_PREFIXES, source=source)
        except ValueError as e:
            raise WeightsMismatchError(
                f"{e}\nCheck MODEL.BACKBONE.NAME and MODEL.RESNETS.DEPTH/SHORTCUT/PLAIN/STEM_OUT_CHANNELS against "
                "the network the file was trained as."
            ) from None
        logger.info(
            f"{source}: loaded {len(mapped)} backbone tensors; randomly initialised: "
            # grouped by module: roi_heads.box_predictor.cls_score.weight -> roi_heads.box_predictor
            + ", ".join(sorted({".".join(k.split(".")[:2]) for k in missing}) or ["none"])
        )
        return _IncompatibleKeys(missing_keys=missing, unexpected_keys=[], incorrect_shapes=[])


# -- conversion of pickled weights (runs the pickle: only on the user's explicit request) ----


def convert_pickle_weights(src, dst) -> dict:
    """Convert a pickled weights file (detectron2/Detectron/MSRA ``.pkl``, or a torch file that
    needs full unpickling) into ``dst`` (``.safetensors``) and return its metadata.

    UNPICKLING EXECUTES CODE FROM ``src``: call this only for files from a trusted source.
    ImageNet backbones become backbone files (with the architecture and input normalisation
    their origin implies: MSRA/Caffe2 BGR, torchvision RGB); detectors keep detectron2 names.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"output must be a .safetensors file, got {dst}")
    if src.suffix.lower() == ".pkl":
        # detectron2's own reader: its model-zoo format, or Caffe2/Detectron "blobs".
        data = DetectionCheckpointer(torch.nn.Module())._load_file(str(src))
    else:
        obj = torch.load(src, map_location="cpu", weights_only=False)
        data = obj if isinstance(obj, dict) and "model" in obj else {"model": obj}
        if isinstance(data["model"], dict) and isinstance(data["model"].get("state_dict"), dict):
            data["model"] = data["model"]["state_dict"]
    author = data.get("__author__")
    state = {k: torch.as_tensor(v).clone() for k, v in data["model"].items() if hasattr(v, "shape")}
    if author == "Caffe2":
        if any(k.startswith(("rpn", "cls_score", "bbox_pred", "fpn", "mask_fcn")) for k in state):
            state, _ = convert_c2_detectron_names(state)
        else:
            state = dict(zip(convert_basic_c2_names(list(state)), state.values()))
    if any(k.startswith(DETECTOR_PREFIXES) for k in state):
        meta = {"format": DETECTOR_FORMAT, "source": str(src), "author": author}
    else:
        state = _as_backbone(state, src)
        if is_torchvision_resnet(state) or is_torchvision_vgg16(state):
            state = from_torchvision(state)
            meta = _origin_metadata(state, torchvision=True)
        else:  # detectron2's model zoo also holds torchvision ResNets in its own names, FrozenBN
            meta = _origin_metadata(state, torchvision=author == "torchvision", norm="FrozenBN")
        meta.update(source=str(src), author=author)
    save_safetensors(state, dst, metadata=meta)
    return meta


def _as_backbone(state, src):
    """Drop classifier heads and complete BN layers that store only scale and bias (Caffe2)."""
    if "stem.conv1.weight" in state:  # Caffe2 names converted: keep stem and stages only
        state = {k: v for k, v in state.items() if k.startswith(("stem.",) + _STAGE_PREFIXES)}
    for key in [k for k in state if k.endswith(".norm.weight")]:
        prefix = key[: -len("weight")]
        if prefix + "running_mean" not in state:
            # Caffe2's AffineChannel is y = s * x + b exactly; BN divides by sqrt(var + eps).
            state[prefix + "running_mean"] = torch.zeros_like(state[key])
            state[prefix + "running_var"] = torch.full_like(state[key], 1 - _BN_EPS)
    if not state:
        raise ValueError(f"{src}: no weights found")
    return state

