"""Boxes and labels drawn with Pillow: the one drawing helper of the demos, the dataset browser, the
ground-truth-vs-detections grid and the result analysis (numpy and Pillow only, so the deploy
runner draws as the training side does). Drawings are made on a canvas of at most ``max_side``
pixels: a 100-megapixel photo is shrunk before anything is drawn on it."""
from __future__ import annotations

import colorsys
import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["MAX_SIDE", "class_color", "class_name", "draw_boxes", "fit_scale"]

# The long side of a drawing unless a caller asks otherwise: a screen's worth.
MAX_SIDE = 1600


def class_name(class_names, class_id) -> str:
    """``class_names[class_id]``, or the id as text when the names are unknown or too few."""
    class_id = int(class_id)
    return str(class_names[class_id]) if class_names and 0 <= class_id < len(class_names) else str(class_id)


def class_color(class_id) -> tuple:
    """An RGB colour (0..255) per class: well-separated hues (golden-ratio steps), bright enough
    for white text on it; the same in every picture."""
    r, g, b = colorsys.hsv_to_rgb((int(class_id) * 0.618034) % 1.0, 0.85, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def fit_scale(height: int, width: int, max_side: int | None = MAX_SIDE) -> float:
    """The factor (<= 1) that brings the long side of a ``height`` x ``width`` image to at most
    ``max_side`` (None or 0: 1, full size)."""
    return min(1.0, max_side / max(height, width, 1)) if max_side else 1.0


@functools.lru_cache(maxsize=16)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow's scalable font (FreeType)
    except (TypeError, ValueError, OSError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()


def draw_boxes(image, boxes, labels=None, colors=None, *, scale=1.0, max_side=None, line_width=None,
               label_below=False) -> np.ndarray:
    """``image`` (HxWx3 uint8 RGB) resized by ``scale`` (and further down to ``max_side``), with
    each box (xyxy in the input image's pixels) outlined in its colour (RGB 0..255, default one
    per index) and its label written white on that colour, above the box's top-left corner (or
    under its bottom-left with ``label_below``). Returns the drawing as an array."""
    h, w = image.shape[:2]
    scale *= fit_scale(round(h * scale), round(w * scale), max_side)
    canvas = Image.fromarray(np.ascontiguousarray(image))
    if scale != 1.0:
        canvas = canvas.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    side = max(canvas.size)
    line_width = line_width or max(2, round(side / 400))
    font = _font(max(10, round(side / 60)))
    boxes = np.rint(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale).astype(int)
    half = line_width // 2  # each line centred on the box's edge, as matplotlib draws it
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        color = tuple(colors[i]) if colors is not None else class_color(i)
        draw.rectangle((x0 - half, y0 - half, x1 - half + line_width - 1, y1 - half + line_width - 1),
                       outline=color, width=line_width)
        if labels is None or not labels[i]:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), labels[i], font=font)
        tw, th = right - left + 4, bottom - top + 4
        ty = y1 if label_below else (y0 - th if y0 - th >= 0 else y0)
        ty = min(ty, canvas.height - th)
        draw.rectangle((x0, ty, x0 + tw, ty + th), fill=color)
        draw.text((x0 + 2 - left, ty + 2 - top), labels[i], fill=(255, 255, 255), font=font)
    return np.asarray(canvas)
