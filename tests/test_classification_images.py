"""Hostile images and broken class trees for pretraining (issue 6 item 3, issue 4 'Bad input')."""
import io
import logging
import struct

import numpy as np
import pytest
from PIL import Image

from resnet_det.data.imagenet import ImageFolderDataset, check_class_tree, load_image
from resnet_det.utils.image import ImageError


def _jpeg_bytes(size=(40, 30), color=(200, 30, 30)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0 header's dimensions: a tiny file that claims to be width x height."""
    i = data.index(b"\xff\xc0")
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9 :]


def test_truncated_jpeg_is_unreadable_and_named(tmp_path):
    good = _jpeg_bytes((64, 64))
    p = tmp_path / "trunc.JPEG"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageError, match="trunc.JPEG"):
        load_image(p)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.JPEG"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.JPEG: cannot decode image \(empty file"):
        load_image(p)


def test_png_named_jpg_is_decoded_by_content(tmp_path):
    p = tmp_path / "really_png.jpg"
    Image.new("RGB", (10, 12), (1, 2, 3)).save(p, "PNG")
    im = load_image(p)
    assert im.mode == "RGB" and im.size == (10, 12) and im.getpixel((0, 0)) == (1, 2, 3)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.JPEG"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p, "JPEG", quality=95)  # pure red in CMYK
    im = load_image(p)
    r, g, b = im.getpixel((8, 8))
    assert im.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "deep.png"
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(p)
    im = load_image(p)
    values = [im.getpixel((x, 0)) for x in range(3)]
    # PIL's own convert("RGB") would give 255 for both bright pixels.
    assert values == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_grayscale_and_palette_become_rgb(tmp_path):
    g = tmp_path / "gray.JPEG"
    Image.new("L", (8, 8), 77).save(g, "JPEG", quality=100)
    im = load_image(g)
    assert im.mode == "RGB" and len(set(im.getpixel((4, 4)))) == 1
    p = tmp_path / "pal.png"
    Image.new("RGB", (8, 8), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(p)
    assert load_image(p).getpixel((0, 0)) == (10, 200, 30)


def test_rgba_transparent_pixels_composed_on_white(tmp_path):
    p = tmp_path / "alpha.png"
    im = Image.new("RGBA", (4, 1), (0, 0, 0, 0))  # fully transparent black
    im.putpixel((0, 0), (255, 0, 0, 255))  # opaque red
    im.save(p)
    out = load_image(p)
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((3, 0)) == (255, 255, 255)


def test_huge_image_header_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.JPEG"
    p.write_bytes(_patch_jpeg_size(_jpeg_bytes(), 20000, 20000))  # 4e8 pixels claimed, ~1 KB file
    with pytest.raises(ImageError, match=r"bomb.JPEG: .*DATA.MAX_IMAGE_PIXELS"):
        load_image(p)


def test_long_thin_20000px_image_loads(tmp_path):
    p = tmp_path / "wide.JPEG"
    Image.new("RGB", (20000, 64), (0, 0, 255)).save(p, "JPEG")
    im = load_image(p, draft_short_side=480)
    assert im.size == (20000, 64)


def test_jpeg_draft_keeps_short_side_at_least_requested(tmp_path):
    p = tmp_path / "big.JPEG"
    Image.new("RGB", (2000, 1000), (0, 90, 0)).save(p, "JPEG")
    im = load_image(p, draft_short_side=256)
    assert 256 <= min(im.size) < 1000 and im.size[0] == 2 * im.size[1]


def test_exif_orientation_applied(tmp_path):
    p = tmp_path / "rotated.JPEG"
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(p, "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(p)
    assert out.size == (20, 40)
    # After the 90 degree clockwise turn, the left (red) half is on top.
    assert out.getpixel((10, 5))[0] > 200 and out.getpixel((10, 35))[2] > 200


def _tree(root, classes=("a", "b"), per_class=2):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            (root / c / f"{c}{i}.JPEG").write_bytes(_jpeg_bytes(color=(10 * i, 100, 0)))
    return root


def test_missing_root_and_empty_class_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        check_class_tree(tmp_path / "nowhere")
    (tmp_path / "noclasses").mkdir()
    with pytest.raises(FileNotFoundError, match="noclasses holds no class folders"):
        check_class_tree(tmp_path / "noclasses")
    root = _tree(tmp_path / "train")
    (root / "c_empty").mkdir()
    (root / "c_empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"contain no images.*c_empty"):
        check_class_tree(root)


def test_val_classes_must_match_train(tmp_path):
    train = _tree(tmp_path / "train", ("a", "b"))
    val = _tree(tmp_path / "val", ("a", "z"))
    with pytest.raises(ValueError, match=r"missing folders \['b'\], extra folders \['z'\]"):
        ImageFolderDataset(val, classes=check_class_tree(train))


def test_unreadable_image_skipped_with_counted_warning_or_strict_error(tmp_path, caplog):
    root = _tree(tmp_path / "train", ("a", "b"), per_class=2)
    bad = root / "a" / "a1.JPEG"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    ds = ImageFolderDataset(root)
    index = [p for p, _ in ds.samples].index(str(bad))
    with caplog.at_level(logging.WARNING):
        image, label, i = ds[index]
    # Replaced by the next sample (class b's first image), deterministically.
    assert (label, i) == (1, index) and ds.num_skipped == 1
    assert "a1.JPEG" in caplog.text
    strict = ImageFolderDataset(root, strict=True)
    with pytest.raises(ImageError, match=r"a1.JPEG.*DATA.STRICT"):
        strict[index]
