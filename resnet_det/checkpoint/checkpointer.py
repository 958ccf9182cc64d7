"""The one checkpointer of both training stages: fvcore's ``Checkpointer`` (model plus
checkpointables: optimizer, scheduler, grad scaler, ...) that never unpickles, saves
atomically, refuses non-finite weights, and keeps the newest ``max_to_keep`` periodic files
across restarts."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from fvcore.common.checkpoint import Checkpointer, _IncompatibleKeys

from detectron2.utils import comm

from .io import PICKLE_SUFFIXES, atomic_write, load_state_dict_checked, load_state_dict_file, read_safetensors_metadata, _unwrap

__all__ = ["SafeCheckpointer", "prune_checkpoints", "LAST_CHECKPOINT"]

LAST_CHECKPOINT = "last_checkpoint"  # fvcore's tag file name


def prune_checkpoints(output_dir, keep: int) -> list:
    """Delete all but the ``keep`` newest periodic checkpoints (``model_<iteration>.pth``) of
    ``output_dir``; never the one ``last_checkpoint`` names, nor ``model_final.pth``. ``keep``
    0 keeps all. Returns the deleted paths. It reads the folder, so it counts the files of
    earlier (killed, resumed) runs too."""
    if keep <= 0:
        return []
    pointer = Path(output_dir) / LAST_CHECKPOINT
    current = pointer.read_text().strip() if pointer.is_file() else None
    periodic = sorted(p for p in Path(output_dir).glob("model_*.pth") if p.stem[6:].isdigit())
    doomed = [p for p in periodic[:-keep] if p.name != current]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


class SafeCheckpointer(Checkpointer):
    """fvcore's checkpointer that reads only safe formats (``.safetensors``, ``torch.load`` with
    ``weights_only=True``; pickles are refused naming the conversion command), loads the model
    strictly, writes to a temporary file renamed into place (the ``last_checkpoint`` tag too),
    refuses NaN/inf weights, and prunes periodic files down to ``max_to_keep`` (0: keep all)."""

    def __init__(self, model, save_dir="", *, max_to_keep=0, save_to_disk=None, **checkpointables):
        # Like detectron2's: only the main process writes files.
        save_to_disk = comm.is_main_process() if save_to_disk is None else save_to_disk
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.max_to_keep = max_to_keep

    def load(self, path, *args, **kwargs):
        """Load ``path`` (a local file; URLs are refused: nothing is downloaded at run time)."""
        if path and "://" in str(path):
            raise ValueError(
                f"MODEL.WEIGHTS {path!r} is a URL; this project does not download weights. "
                "Download the file yourself; a .pkl must then be converted once with "
                "python tools/convert_weights.py --allow-pickle IN.pkl OUT.safetensors"
            )
        self._source = str(path)
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename):
        path = Path(filename)
        suffix = path.suffix.lower()
        if suffix == ".safetensors" or suffix in PICKLE_SUFFIXES:
            state = load_state_dict_file(path)  # refuses pickles, naming the conversion command
            meta = read_safetensors_metadata(path) if suffix == ".safetensors" else None
            return {"model": state, "__resnet_det_meta__": meta}
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            # Re-read through the project's loader, which explains the failure (unsafe
            # pickle: the conversion command; corrupt file: its path) and raises.
            load_state_dict_file(path)
            raise
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            return obj  # a training checkpoint: model plus checkpointables and iteration
        return {"model": _unwrap(obj, path), "__resnet_det_meta__": None}

    def _load_model(self, checkpoint):
        checkpoint.pop("__resnet_det_meta__", None)
        load_state_dict_checked(self.model, checkpoint["model"], source=getattr(self, "_source", "checkpoint"))
        return _IncompatibleKeys(missing_keys=[], unexpected_keys=[], incorrect_shapes=[])

    def save(self, name: str, **kwargs) -> None:
        """Like fvcore's ``save``, but atomic, refused when a weight is NaN/inf, and followed by
        pruning; the last checkpoint is always complete and good."""
        if not self.save_dir or not self.save_to_disk:
            return
        state = self.model.state_dict()
        bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise FloatingPointError(
                f"not saving checkpoint {name}: {len(bad)} weight tensors hold NaN/inf "
                f"(first: {', '.join(bad[:5])}); the previous checkpoint is kept"
            )
        data = {"model": state, **{key: obj.state_dict() for key, obj in self.checkpointables.items()}, **kwargs}
        save_file = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info(f"Saving checkpoint to {save_file}")
        with atomic_write(save_file) as f:
            torch.save(data, f)
        self.tag_last_checkpoint(f"{name}.pth")
        prune_checkpoints(self.save_dir, self.max_to_keep)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` at a complete file, replacing the tag in one rename."""
        with atomic_write(os.path.join(self.save_dir, LAST_CHECKPOINT), mode="w") as f:
            f.write(last_filename_basename)
