"""The one image-file reader of both stages (pretraining, detection training and evaluation, the
demos), with numpy and Pillow only, so that the ONNX Runtime runner reads files as training did.
Its policy (EXIF orientation, wide integers scaled, float refused, alpha on white, the per-call
pixel limit) is tabled in docs/bad_inputs.md; each failure is an :class:`ImageError`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "ImageError", "list_images", "open_image", "load_image",
           "read_image_checked"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# The default pixel limit of both stages' configs: Pillow's own decompression-bomb threshold.
MAX_PIXELS = 89_478_485

logger = logging.getLogger(__name__)

# Pillow names of single-channel 16/32-bit integer modes (16-bit PNG, 16-bit TIFF).
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_PIL_LIMIT_LOCK = threading.Lock()


class ImageError(ValueError):
    """An image file cannot be used; the message names the file, the reason and the fix."""


@contextlib.contextmanager
def _pillow_guard(max_pixels):
    # Pillow warns above Image.MAX_IMAGE_PIXELS and refuses above twice that at open(); the
    # caller's limit decides instead: the warning is silenced and, for a limit above Pillow's
    # refusal threshold, the threshold is lifted for this call only (under a lock) and restored.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pillow = Image.MAX_IMAGE_PIXELS
        if not (max_pixels and pillow and max_pixels > 2 * pillow):
            yield
            return
        with _PIL_LIMIT_LOCK:
            default, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = default


def _label(file_name):
    # How messages name the image: a path as given, a binary file object (an upload held in
    # memory) by its ``name`` attribute.
    return getattr(file_name, "name", "<file object>") if hasattr(file_name, "read") else file_name


@contextlib.contextmanager
def open_image(file_name, max_pixels=None, limit_key="DATASETS.MAX_IMAGE_PIXELS"):
    """Pillow's ``Image.open`` of ``file_name`` (a path, or a seekable binary file object read
    from its start) with the header read, pixels not yet decoded, after refusing an empty file or
    one above ``max_pixels``; every failure, including those of decoding inside the block, an
    :class:`ImageError` naming the file (``limit_key``: the config key the pixel-limit message
    tells the user to raise)."""
    given = file_name if hasattr(file_name, "read") else None
    file_name = _label(file_name)
    try:
        with _pillow_guard(max_pixels), \
                (open(file_name, "rb") if given is None else contextlib.nullcontext(given)) as f:
            if f.seek(0, os.SEEK_END) == 0:
                raise ImageError(f"{file_name}: cannot decode image (empty file, 0 bytes); "
                                 "re-encode or remove the file")
            f.seek(0)
            with Image.open(f) as image:
                width, height = image.size
                if max_pixels and width * height > max_pixels:
                    raise ImageError(f"{file_name}: {width}x{height} = {width * height} pixels is above "
                                     f"{limit_key}={max_pixels}; downscale the image (and its boxes) or "
                                     f"raise {limit_key} if the file is trusted")
                yield image
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{file_name}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{file_name}: is a directory, not an image file") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{file_name}: {e}; downscale the image or raise {limit_key}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        # Non-images raise UnidentifiedImageError; truncated JPEG/PNG raise OSError (unless
        # ImageFile.LOAD_TRUNCATED_IMAGES, which this respects); SyntaxError/ValueError come
        # from some of Pillow's format plugins on malformed headers.
        raise ImageError(f"{file_name}: cannot decode image ({type(e).__name__}: {e}); "
                         "re-encode or remove the file") from None


def _decode(file_name, max_pixels, limit_key, draft_short_side=None) -> Image.Image:
    # The stored pixels as 8-bit RGB (the policy above), before the EXIF rotation.
    with open_image(file_name, max_pixels, limit_key) as image:
        if draft_short_side and image.format == "JPEG":
            # The JPEG decoder downscales by 2/4/8 while the short side stays >= this.
            image.draft("RGB", (draft_short_side, draft_short_side))
        image.load()  # inside open_image: truncation errors name this file
        return _to_rgb(image, _label(file_name))


def _to_rgb(image: Image.Image, file_name) -> Image.Image:
    if image.mode in _WIDE_INT_MODES:
        # Scaled and rounded to 8 bits: Pillow's convert() would clip at 255.
        array = np.asarray(image, dtype=np.int64)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ImageError(f"{file_name}: integer image values {array.min()}..{array.max()} are outside "
                             "16-bit range; save it as 8 or 16-bit")
        gray = Image.fromarray(((array + 128) // 257).astype(np.uint8), mode="L")
        gray.info = image.info  # keeps the EXIF block for the orientation
        image = gray
    elif image.mode == "F":  # floats have no agreed range
        raise ImageError(f"{file_name}: float image (mode F) is not supported; save it as 8 "
                         "or 16-bit")
    # Transparent pixels on white, as a viewer shows them (the colour stored under them is
    # arbitrary).
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
    elif image.mode == "RGB":
        return image  # convert() would copy the pixels for nothing
    else:
        rgb = image.convert("RGB")
    rgb.info = image.info
    return rgb


def _exif_oriented(image: Image.Image) -> Image.Image:
    # detectron2's _apply_exif_orientation: a broken EXIF block leaves the image as stored.
    # exif_transpose copies an unrotated image; the usual photo is returned as it is.
    try:
        if image.getexif().get(0x0112, 1) == 1:
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001  (Pillow raises many types on malformed EXIF)
        return image


def load_image(file_name, *, max_pixels=None, draft_short_side=None,
               limit_key="DATASETS.MAX_IMAGE_PIXELS") -> Image.Image:
    """``file_name`` (a path or a binary file object) as an 8-bit RGB PIL image under the
    module's policy, EXIF orientation applied; ``draft_short_side`` lets the JPEG decoder
    downscale by 2/4/8 while the short side stays at least that long (a large speed-up for big
    photos that are resized down anyway)."""
    return _exif_oriented(_decode(file_name, max_pixels, limit_key, draft_short_side))


def read_image_checked(file_name, format="RGB", expected_hw=None, max_pixels=None, strict=False,
                       limit_key="DATASETS.MAX_IMAGE_PIXELS"):
    """Read an image like detectron2's `read_image` (format RGB, BGR or L), under the module's
    policy, raising ImageError naming the file.

    Refuses images above `max_pixels` before decoding them, and checks the size against
    `expected_hw` (height, width). When only the un-rotated pixels match `expected_hw`, the
    annotation was made without the EXIF rotation: the rotation is ignored with a warning (an
    error if `strict`). `limit_key` is what the pixel-limit message tells the user to raise.
    """
    image = _decode(file_name, max_pixels, limit_key)
    oriented = _exif_oriented(image)
    file_name = _label(file_name)
    if expected_hw is not None:
        expected_hw = tuple(int(v) for v in expected_hw)
        oriented_hw = (oriented.height, oriented.width)
        raw_hw = (image.height, image.width)
        if oriented_hw != expected_hw:
            if raw_hw == expected_hw:
                message = (f"{file_name}: the annotation size {expected_hw} (h, w) matches the stored "
                           f"pixels, not the EXIF-rotated image {oriented_hw}")
                if strict:
                    raise ImageError(message + "; rotate the file or its annotation")
                logger.warning(message + ": ignoring the EXIF rotation for this image")
                oriented = image
            else:
                raise ImageError(f"{file_name}: image is {oriented_hw} (h, w) but its annotation says "
                                 f"{expected_hw}; fix the width/height in the annotation file")
    # detectron2's convert_PIL_to_numpy, which would import torch into the deploy runner.
    mode = "RGB" if format == "BGR" else format
    if format is not None and oriented.mode != mode:  # convert() would copy a big photo for nothing
        oriented = oriented.convert(mode)
    array = np.asarray(oriented)
    if format == "L":
        return array[:, :, None]
    return array[:, :, ::-1] if format == "BGR" else array


def list_images(path) -> list[Path]:
    """An image file, or the images directly inside a directory (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"--input {path}: no such file or directory")
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"--input {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return images
