"""The one image-file reader (one policy for training, evaluation and both demos), with
numpy and Pillow only, so that the ONNX Runtime runner reads files exactly as the mapper does.

Policy: EXIF orientation applied (as detectron2's ``read_image``), 16-bit images scaled to
8 bits (not clipped), grayscale/RGBA/palette converted by Pillow to the requested format,
every decoding failure an :class:`ImageError` naming the file.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "ImageError", "list_images", "read_image_checked", "pil_to_numpy"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

logger = logging.getLogger(__name__)

# Pillow names of single-channel 16/32-bit integer modes (16-bit PNG, 16-bit TIFF).
_WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(ValueError):
    """An image file cannot be used; the message names the file, the reason and the fix."""


def pil_to_numpy(image: Image.Image, format: str | None) -> np.ndarray:
    """detectron2's ``convert_PIL_to_numpy`` for the formats used here: ``RGB``/``BGR`` give
    HxWx3 uint8, ``L`` HxWx1, None the image's own mode."""
    if format is not None:
        image = image.convert("RGB" if format == "BGR" else format)
    array = np.asarray(image)
    if format == "L":
        array = array[:, :, None]
    elif format == "BGR":
        array = array[:, :, ::-1]
    return array


def _exif_oriented(image: Image.Image) -> Image.Image:
    # detectron2's _apply_exif_orientation: a broken EXIF block leaves the image as stored.
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001  (Pillow raises many types on malformed EXIF)
        return image


def read_image_checked(file_name, format=None, expected_hw=None, max_pixels=None, strict=False):
    """Read an image like detectron2's `read_image`, raising ImageError naming the file.

    Handles 16-bit images (scaled to 8 bits instead of clipped), refuses images above
    `max_pixels` before decoding them, and checks the size against `expected_hw` (height,
    width). When only the un-rotated pixels match `expected_hw`, the annotation was made
    without the EXIF rotation: the rotation is ignored with a warning (an error if `strict`).
    """
    try:
        with open(file_name, "rb") as f:
            image = Image.open(f)
            width, height = image.size
            if max_pixels and width * height > max_pixels:
                raise ImageError(
                    f"{file_name}: {width}x{height} = {width * height} pixels is above "
                    f"DATASETS.MAX_IMAGE_PIXELS={max_pixels}; downscale the image (and its "
                    "boxes) or raise DATASETS.MAX_IMAGE_PIXELS"
                )
            # Decode now, inside the try, so truncation errors name this file.
            image.load()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{file_name}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{file_name}: is a directory, not an image file") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{file_name}: {e}; downscale the image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        # Zero-byte files and non-images raise UnidentifiedImageError; truncated JPEG/PNG
        # raise OSError (unless ImageFile.LOAD_TRUNCATED_IMAGES, which this respects).
        raise ImageError(
            f"{file_name}: cannot decode image ({type(e).__name__}: {e}); "
            "re-encode or remove the file"
        ) from None
    if image.mode in _WIDE_INT_MODES:
        image = _to_8bit(image, file_name)
    elif image.mode == "F":
        raise ImageError(f"{file_name}: float image (mode F) is not supported; save it as 8-bit")
    oriented = _exif_oriented(image)
    if expected_hw is not None:
        expected_hw = tuple(int(v) for v in expected_hw)
        oriented_hw = (oriented.height, oriented.width)
        raw_hw = (image.height, image.width)
        if oriented_hw != expected_hw:
            if raw_hw == expected_hw:
                message = (
                    f"{file_name}: the annotation size {expected_hw} (h, w) matches the stored "
                    f"pixels, not the EXIF-rotated image {oriented_hw}"
                )
                if strict:
                    raise ImageError(message + "; rotate the file or its annotation")
                logger.warning(message + ": ignoring the EXIF rotation for this image")
                oriented = image
            else:
                raise ImageError(
                    f"{file_name}: image is {oriented_hw} (h, w) but its annotation says "
                    f"{expected_hw}; fix the width/height in the annotation file"
                )
    return pil_to_numpy(oriented, format)


def _to_8bit(image, file_name):
    # PIL's convert("RGB") clips 16-bit values at 255, which turns most images white.
    array = np.asarray(image, dtype=np.int64)
    if array.min() < 0 or array.max() > 65535:
        raise ImageError(
            f"{file_name}: integer image values {array.min()}..{array.max()} are outside "
            "16-bit range; save it as 8 or 16-bit"
        )
    return Image.fromarray((array // 257).astype(np.uint8), mode="L")


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
