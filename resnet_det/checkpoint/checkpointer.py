"""The one checkpointer of both training stages (fvcore's, made safe and atomic), and the pruning
of its periodic files."""
from __future__ import annotations

from pathlib import Path

from detectron2.utils import comm
from fvcore.common.checkpoint import Checkpointer, _IncompatibleKeys
from iopath.common.file_io import PathManager

from resnet_det.checkpoint.io import _unwrap, load_state_dict_checked, read_safetensors_metadata, read_weights_file
from resnet_det.utils.files import atomic_write

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


class _AtomicFiles(PathManager):
    """iopath's local files, written through :func:`atomic_write`: fvcore's ``save`` and its
    ``last_checkpoint`` tag replace a file in one rename, never leaving a partial one."""

    def open(self, path, mode="r", *args, **kwargs):
        return atomic_write(path, mode) if "w" in mode else super().open(path, mode, *args, **kwargs)


class SafeCheckpointer(Checkpointer):
    """fvcore's checkpointer that reads only safe formats (``.safetensors``, ``torch.load`` with
    ``weights_only=True``; pickles are refused naming the conversion command), loads the model
    strictly, writes to a temporary file renamed into place (the ``last_checkpoint`` tag too),
    refuses NaN/inf weights, and prunes periodic files down to ``max_to_keep`` (0: keep all)."""

    def __init__(self, model, save_dir="", *, max_to_keep=0, save_to_disk=None, **checkpointables):
        # Like detectron2's: only the main process writes files.
        save_to_disk = comm.is_main_process() if save_to_disk is None else save_to_disk
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = _AtomicFiles()  # local files only: load() refuses URLs
        self.max_to_keep = max_to_keep

    def remove_interrupted_saves(self) -> None:
        """Delete the temporary files of saves that a kill interrupted (``.<name>.*.tmp`` beside
        the checkpoints); the main process does it when a trainer starts or resumes."""
        if self.save_dir and self.save_to_disk:
            for stale in Path(self.save_dir).glob(".*.tmp"):
                stale.unlink(missing_ok=True)

    def load(self, path, *args, **kwargs):
        """Load ``path`` (a local file; URLs are refused: nothing is downloaded at run time)."""
        if path and "://" in str(path):
            raise ValueError(f"MODEL.WEIGHTS {path!r} is a URL; this project does not download weights. "
                             "Download the file yourself; a .pkl must then be converted once with "
                             "python tools/convert_weights.py --allow-pickle IN.pkl OUT.safetensors")
        self._source = str(path)
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename):
        obj = read_weights_file(filename)  # refuses pickles, naming the conversion command
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            return obj  # a training checkpoint: model plus checkpointables and iteration
        meta = read_safetensors_metadata(filename) if str(filename).lower().endswith(".safetensors") else None
        return {"model": _unwrap(obj, filename), "__resnet_det_meta__": meta}

    def _load_model(self, checkpoint):
        checkpoint.pop("__resnet_det_meta__", None)
        load_state_dict_checked(self.model, checkpoint["model"], source=getattr(self, "_source", "checkpoint"))
        return _IncompatibleKeys(missing_keys=[], unexpected_keys=[], incorrect_shapes=[])

    def save(self, name: str, **kwargs) -> None:
        """fvcore's ``save`` (atomic), refused when a weight is NaN/inf and followed by pruning:
        the last checkpoint is always complete and good."""
        if not self.save_dir or not self.save_to_disk:
            return
        bad = [k for k, v in self.model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()]
        if bad:
            raise FloatingPointError(f"not saving checkpoint {name}: {len(bad)} weight tensors hold NaN/inf "
                                     f"(first: {', '.join(bad[:5])}); the previous checkpoint is kept")
        super().save(name, **kwargs)
        prune_checkpoints(self.save_dir, self.max_to_keep)
