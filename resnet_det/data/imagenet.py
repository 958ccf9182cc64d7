"""ImageNet-layout data for pretraining: decoding (the shared reader, with a fast JPEG path), folder
checks, and loaders whose batches depend only on (seed, position) (:mod:`resnet_det.data.samplers`):
the same for any number of workers, and a resumed run skips to its position without decoding."""
from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import warnings
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets.folder import IMG_EXTENSIONS, DatasetFolder, find_classes, make_dataset
from torchvision.transforms.v2.functional import pil_to_tensor

try:  # deprecated since torchvision 0.29 in favour of TorchCodec (not a dependency here)
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
except ImportError:  # removed: every image goes through PIL
    decode_jpeg = None

from resnet_det.data.samplers import TrainSampler, derived_seed, seeded_rngs
from resnet_det.utils.image import MAX_PIXELS, ImageError, open_image
from resnet_det.utils.image import load_image as read_pil

__all__ = ["ClassTreeError", "ImageError", "DataLoaderWorkerError", "load_image", "decode_image",
           "check_class_tree", "ImageFolderDataset", "TrainSampler", "build_train_loader", "build_test_loader",
           "iterate_loader"]

logger = logging.getLogger(__name__)


# One error type for an unusable image file in both stages (the shared reader's).
ImageError = ImageError

# The pretraining config key that holds the pixel limit (named in the reader's errors).
_PIXEL_KEY = "DATA.MAX_IMAGE_PIXELS"


class ClassTreeError(ValueError):
    """An ImageNet-layout folder tree that cannot be trained on (empty or single class
    folders, a validation tree whose classes differ); names the folders."""


class DataLoaderWorkerError(RuntimeError):
    """A data-loading worker died (killed, out of memory, crashed in C code)."""


def load_image(path, *, max_pixels: int = MAX_PIXELS, draft_short_side: int | None = None) -> Image.Image:
    """Decode ``path`` to an 8-bit RGB PIL image with the shared reader's policy
    (:mod:`resnet_det.utils.image`); ``draft_short_side`` lets the JPEG decoder downscale by
    2/4/8 while the short side stays at least that long."""
    return read_pil(path, max_pixels=max_pixels, draft_short_side=draft_short_side, limit_key=_PIXEL_KEY)


def decode_image(path, *, max_pixels: int = MAX_PIXELS, draft_short_side: int | None = None) -> torch.Tensor:
    """Decode ``path`` to a uint8 RGB ``3xHxW`` tensor: :func:`load_image`'s checks, conversions
    and errors, in fewer copies. RGB and grayscale JPEGs that the draft would not shrink go through
    torchvision's libjpeg-turbo decoder straight into the tensor (PIL's pixels, EXIF orientation
    applied; docs/benchmarks.md); everything else, and what that decoder refuses, through PIL."""
    direct = False
    # A bad header or size: load_image below names the file and the fault.
    with contextlib.suppress(ImageError), open_image(path, max_pixels, _PIXEL_KEY) as im:
        w, h = im.size
        # im.draft() downscales by a power of two only when both sides allow at least 2.
        shrinks = bool(draft_short_side) and min(w, h) // draft_short_side >= 2
        direct = decode_jpeg is not None and im.format == "JPEG" and im.mode in ("RGB", "L") and not shrinks
    if direct:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # see the import
                return decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB, apply_exif_orientation=True)
        except RuntimeError:
            # Truncated or corrupt data: PIL decides, so exactly the files that PIL reads are
            # used, and an unreadable one fails with load_image's error naming it.
            pass
    return pil_to_tensor(load_image(path, max_pixels=max_pixels, draft_short_side=draft_short_side))


def check_class_tree(root, *, reference_classes=None) -> list[str]:
    """Sorted class folder names under ``root``, after checking the tree is usable.

    Raises ``FileNotFoundError``/:class:`ClassTreeError` naming the folder for a missing root, a root
    without class folders, class folders with no images, and (with ``reference_classes``, the
    training classes) a class set that differs from the reference.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; expected {root}/<class>/<image> "
                                f"(ImageNet layout). Set DATA.ROOT / DATA.TRAIN_DIR / DATA.VAL_DIR.")
    try:
        classes, _ = find_classes(str(root))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{root} holds no class folders; expected {root}/<class>/<image>") from e
    # torchvision's folder walker (sorted, case-insensitive extensions, symlinks followed).
    found = make_dataset(str(root), {c: i for i, c in enumerate(classes)}, IMG_EXTENSIONS, allow_empty=True)
    empty = sorted(set(classes) - {classes[label] for _, label in found})
    if empty:
        shown = ", ".join(str(root / c) for c in empty[:10])
        raise ClassTreeError(f"{len(empty)} class folder(s) under {root} contain no images "
                             f"({', '.join(IMG_EXTENSIONS)}): {shown}{' ...' if len(empty) > 10 else ''}. "
                             f"Remove them or add images.")
    if reference_classes is not None and list(reference_classes) != classes:
        missing = sorted(set(reference_classes) - set(classes))
        extra = sorted(set(classes) - set(reference_classes))
        raise ClassTreeError(f"classes of {root} differ from the training classes: missing folders "
                             f"{missing[:10]}{' ...' if len(missing) > 10 else ''}, extra folders "
                             f"{extra[:10]}{' ...' if len(extra) > 10 else ''}. Both trees need the same "
                             f"<class> folder names (e.g. ImageNet wnids).")
    return classes


class ImageFolderDataset(DatasetFolder):
    """torchvision's ``DatasetFolder`` of ``root/<class>/<image>``, checked by
    :func:`check_class_tree`, its samples decoded with :func:`decode_image` (uint8 ``3xHxW``
    tensors) and transformed.

    ``dataset[i]`` (evaluation) or ``dataset[(i, epoch)]`` (training, as yielded by
    :class:`TrainSampler`) returns ``(image, label, i)``. Training transforms run under
    private RNGs seeded by ``derived_seed(seed, epoch, i)``. Unreadable images raise in ``strict`` mode;
    otherwise they are replaced by the next readable sample, with a warning naming the file,
    and counted in :attr:`num_skipped` (shared by all workers).
    """

    def __init__(self, root, transform=None, *, classes=None, strict=False, seed=0,
                 max_pixels=MAX_PIXELS, draft_short_side=None):
        check_class_tree(root, reference_classes=classes)
        super().__init__(Path(root), loader=None, extensions=IMG_EXTENSIONS, transform=transform)
        self.strict = strict
        self.seed = seed
        self.max_pixels = max_pixels
        self.draft_short_side = draft_short_side
        self._skipped = mp.Value("q", 0, lock=True)
        self._inflight = None

    @property
    def num_skipped(self) -> int:
        """How many unreadable images were replaced so far (all workers together)."""
        return int(self._skipped.value)

    def track_workers(self, num_workers: int):
        """Share a per-worker 'sample being decoded' slot, so a dead worker can be named."""
        self._inflight = mp.Array("q", [-1] * max(num_workers, 1), lock=False)

    def inflight_samples(self) -> list[str]:
        """Paths that workers were decoding when last seen (for crash reports)."""
        if self._inflight is None:
            return []
        return [self.samples[i][0] for i in self._inflight if i >= 0]

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, None)
        info = torch.utils.data.get_worker_info()
        if self._inflight is not None and info is not None:
            self._inflight[info.id] = index
        for attempt in range(len(self.samples)):
            i = (index + attempt) % len(self.samples)
            path, label = self.samples[i]
            try:
                image = decode_image(path, max_pixels=self.max_pixels, draft_short_side=self.draft_short_side)
                break
            except ImageError as e:
                if self.strict:
                    raise ImageError(f"{e} (DATA.STRICT is on; set it off to skip such images)") from e
                with self._skipped.get_lock():
                    self._skipped.value += 1
                logger.warning("skipping unreadable image (%d so far): %s", self._skipped.value, e)
        else:
            raise ImageError(f"no readable image under {self.root}")
        if self.transform is not None:
            if epoch is None:
                image = self.transform(image)
            else:
                # A private RNG stream per sample: the same crop/flip/jitter for a sample
                # whichever worker decodes it and whether or not the run was resumed.
                with seeded_rngs(derived_seed(self.seed, epoch, index)):
                    image = self.transform(image)
        if self._inflight is not None and info is not None:
            self._inflight[info.id] = -1
        return image, label, index


def _loader_kwargs(num_workers, persistent, prefetch, timeout, seed):
    kwargs = dict(
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        # The loader draws its workers' base seed from this generator, not from the global
        # RNG, so creating a loader does not shift the training RNG stream (exact resume).
        generator=torch.Generator().manual_seed(seed),
    )
    if num_workers > 0:
        kwargs.update(persistent_workers=persistent, prefetch_factor=prefetch, timeout=timeout)
    return kwargs


def build_train_loader(dataset, batch_size, samples_per_epoch, *, seed=0, rank=0, world_size=1,
                       start=0, num_workers=4, persistent_workers=True, prefetch_factor=2,
                       timeout=600, collate_fn=None) -> DataLoader:
    """An endless loader of ``(images, labels, indices)`` batches of ``batch_size`` for one rank,
    beginning at sample ``start`` of the rank's stream (resume skips without decoding)."""
    sampler = TrainSampler(len(dataset), samples_per_epoch, seed=seed, rank=rank,
                           world_size=world_size, start=start)
    if hasattr(dataset, "track_workers"):
        dataset.track_workers(num_workers)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                      **_loader_kwargs(num_workers, persistent_workers, prefetch_factor, timeout, seed))


def build_test_loader(dataset, batch_size, *, rank=0, world_size=1, num_workers=4,
                      persistent_workers=False, prefetch_factor=2, timeout=600) -> DataLoader:
    """A loader over this rank's share ``rank::world_size`` of ``dataset`` (no padding, so
    summed counts over ranks are exact)."""
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False,
                      **_loader_kwargs(num_workers, persistent_workers, prefetch_factor, timeout, 0))


def iterate_loader(loader, dataset=None):
    """Iterate ``loader``; a dead worker becomes a :class:`DataLoaderWorkerError` naming the
    samples it was decoding (instead of a bare 'worker exited unexpectedly')."""
    iterator = iter(loader)
    try:
        yield from iterator  # the consumer's own errors are raised where it runs, not in here
    except (RuntimeError, ConnectionError) as e:
        msg = str(e) or type(e).__name__
        # A worker killed while the main process fetched a batch's shared memory from it
        # surfaces as a ConnectionError rather than the loader's RuntimeError.
        if not isinstance(e, ConnectionError) and "DataLoader worker" not in msg and "timed out" not in msg:
            raise
        # Stop the other workers now: the error keeps the iterator alive, and while it lives
        # torch's SIGCHLD handler would raise again, anywhere, on the next child process's exit.
        getattr(iterator, "_shutdown_workers", lambda: None)()
        where = dataset.inflight_samples() if dataset is not None and hasattr(dataset, "inflight_samples") else []
        raise DataLoaderWorkerError(
            f"data loading failed ({msg.splitlines()[0]}); samples being decoded: "
            f"{where or 'unknown'}. Check those files, memory limits, or DATA.NUM_WORKERS."
        ) from e
