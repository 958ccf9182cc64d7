"""Reading and writing weight files without running code from them, and atomically."""
from __future__ import annotations

import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import torch

from resnet_det.utils.files import atomic_write

__all__ = ["read_safetensors_metadata", "PICKLE_SUFFIXES", "UnsafeWeightsError", "WeightsFileError",
           "read_weights_file", "load_state_dict_file", "load_state_dict_checked",
           "save_safetensors"]

PICKLE_SUFFIXES = (".pkl", ".pickle")
CONVERT_HINT = "python tools/convert_weights.py --allow-pickle {path} OUT.safetensors"


class WeightsFileError(ValueError):
    """A file given as weights that cannot be read as weights; the message names it."""


class UnsafeWeightsError(WeightsFileError):
    """A weights file can only be read by unpickling it, which may run arbitrary code."""


def _looks_like_torch_file(path) -> bool:
    """Whether ``path`` starts like something torch.save wrote: a zip archive (torch >= 1.6),
    a pickle stream of protocol 2+ (the legacy format, and .pkl files) or a tar (torch < 0.4)."""
    with open(path, "rb") as f:
        first = f.read(1)
    return first == b"\x80" or zipfile.is_zipfile(path) or tarfile.is_tarfile(path)


def save_safetensors(state_dict, path, metadata: dict | None = None) -> Path:
    """Write ``state_dict`` as safetensors atomically; ``metadata`` (json-able) is stored in it."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta = {"resnet_det": json.dumps(metadata, sort_keys=True)} if metadata is not None else None
    with atomic_write(path) as f:
        f.write(save(tensors, metadata=meta))
    return Path(path)


def read_safetensors_metadata(path) -> dict | None:
    """The ``metadata`` dict stored by :func:`save_safetensors`, or None."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["resnet_det"]) if "resnet_det" in meta else None


def read_weights_file(path):
    """What a weights file holds, read without running code from it: the state dict of a
    ``.safetensors``, or what ``torch.load(weights_only=True)`` restores from ``.pth/.pt``.

    Pickle files (``.pkl``) and torch files that need full unpickling are refused with an
    :class:`UnsafeWeightsError` naming the explicit conversion command.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    hint = CONVERT_HINT.format(path=path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeWeightsError(f"{path} is a pickle file; loading it could execute code, so it is not read "
                                 f"implicitly. If you trust its origin, convert it once: {hint}")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise WeightsFileError(f"{path}: not a readable safetensors file ({e})") from e
    if not _looks_like_torch_file(path):
        # A text file, image, yaml... : torch.load would call it a pickle it cannot restore.
        raise WeightsFileError(f"{path} is not a weights file (it is neither a zip archive nor a pickle, as "
                               "torch.save writes). Accepted: .safetensors, a torch state dict saved with torch.save "
                               "(.pth/.pt: a zip archive), or a detectron2/Detectron .pkl converted once with "
                               "tools/convert_weights.py.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeWeightsError(f"{path} contains objects that only full unpickling can restore (which could "
                                 f"execute code); refusing. If you trust its origin, convert it once: {hint}\n"
                                 f"torch said: {str(e).splitlines()[0]}") from e
    except (RuntimeError, EOFError, OSError) as e:
        raise WeightsFileError(f"{path}: not a readable torch weights file ({e})") from e


def _unwrap(obj, path):
    """The state dict (str -> tensor) in ``obj``, itself or under 'model' (detectron2/fvcore) or
    'state_dict' (Lightning-like); a :class:`WeightsFileError` naming ``path`` otherwise."""
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsFileError(f"{path}: expected a state dict (str -> tensor), or a dict holding one under "
                               f"'model'/'state_dict'; got {type(obj).__name__}")
    return obj


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or ``.pth/.pt``, read by :func:`read_weights_file`."""
    return _unwrap(read_weights_file(path), path)


def load_state_dict_checked(model, state_dict, *, allow_missing=(), source="state dict"):
    """Load ``state_dict`` into ``model``, raising a :class:`WeightsFileError` that lists missing,
    unexpected and wrongly shaped keys. Keys starting with a prefix in ``allow_missing`` may be
    absent; the list of those that were is returned."""
    own = model.state_dict()
    allow_missing = tuple(allow_missing)
    missing = [k for k in own if k not in state_dict]
    problems = {"missing keys": [k for k in missing if not (allow_missing and k.startswith(allow_missing))],
                "unexpected keys": [k for k in state_dict if k not in own],
                "shape mismatches": [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                for k in own if k in state_dict and state_dict[k].shape != own[k].shape]}
    if any(problems.values()):
        parts = [f"{source} does not fit {type(model).__name__}:"]
        for title, keys in problems.items():
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"  {title}: {shown}")
        raise WeightsFileError("\n".join(parts))
    model.load_state_dict(state_dict, strict=False)
    return missing
