"""One image policy for both stages: each image mode gives the same pixels through the
pretraining decoder, the detection mapper and the deploy reader."""
import numpy as np
import pytest
from PIL import Image

from resnet_det.data.imagenet import decode_image, load_image
from resnet_det.data.mapper import RobustDatasetMapper
from resnet_det.deploy.runtime import read_image
from resnet_det.utils.image import ImageError, read_image_checked


def _mapper(**kwargs):
    return RobustDatasetMapper(is_train=False, augmentations=[], image_format="RGB", **kwargs)


def _through_every_stage(path, **limit):
    """The HxWx3 uint8 RGB pixels each stage's entry point reads from ``path``."""
    h, w = read_image_checked(str(path)).shape[:2]
    mapped = _mapper(**limit)({"file_name": str(path), "image_id": 0, "height": h, "width": w})
    return {
        "pretrain load_image": np.asarray(load_image(path)),
        "pretrain decode_image": decode_image(path).permute(1, 2, 0).numpy(),
        "detection mapper": mapped["image"].permute(1, 2, 0).numpy(),
        "deploy read_image": read_image(path),
    }


def _save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def _expected(kind):
    if kind == "16bit":  # 0, 32768, 65535 rounded to 8 bits
        return np.array([[[0] * 3, [128] * 3, [255] * 3]], np.uint8)
    if kind in ("rgba", "la", "palette_transparent"):  # transparent pixel composited on white
        return np.array([[[255, 0, 0], [255, 255, 255]]], np.uint8)
    return None


def _image(kind):
    if kind == "16bit":
        return Image.fromarray(np.array([[0, 32768, 65535]], np.uint16))
    if kind == "rgba":
        return Image.fromarray(np.array([[[255, 0, 0, 255], [0, 0, 0, 0]]], np.uint8), "RGBA")
    if kind == "la":
        # Opaque mid-grey, then a transparent black pixel.
        return Image.fromarray(np.array([[[76, 255], [0, 0]]], np.uint8), "LA")
    if kind == "palette_transparent":
        image = Image.new("P", (2, 1))
        image.putpalette([255, 0, 0, 0, 0, 0])
        image.putpixel((1, 0), 1)
        image.info["transparency"] = 1
        return image
    if kind == "cmyk":
        return Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    if kind == "palette":
        return Image.new("RGB", (8, 8), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["16bit", "rgba", "la", "palette_transparent", "cmyk", "palette"])
def test_every_mode_reads_the_same_in_both_stages(tmp_path, kind):
    fmt = "JPEG" if kind == "cmyk" else "PNG"
    path = _save(tmp_path, f"{kind}.{fmt.lower()}", _image(kind), format=fmt)
    pixels = _through_every_stage(path)
    first = pixels["deploy read_image"]
    for stage, got in pixels.items():
        assert got.dtype == np.uint8 and got.shape[2] == 3, stage
        np.testing.assert_array_equal(got, first, err_msg=stage)
    if _expected(kind) is not None:
        if kind == "la":  # grey 76 stays grey
            np.testing.assert_array_equal(first, [[[76] * 3, [255] * 3]])
        else:
            np.testing.assert_array_equal(first, _expected(kind))
    if kind == "cmyk":
        r, g, b = first[4, 4]
        assert r > 200 and g < 60 and b < 60
    if kind == "palette":
        assert tuple(first[0, 0]) == (10, 200, 30)


def test_exif_rotation_applied_in_both_stages(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(tmp_path, "rotated.jpg", image, exif=exif.tobytes(), quality=95)
    for stage, got in _through_every_stage(path).items():
        assert got.shape == (40, 20, 3), stage
        assert got[5, 10, 0] > 200 and got[35, 10, 2] > 200, stage  # red on top after the turn


def test_float_and_out_of_range_images_are_refused_by_both_stages(tmp_path):
    float_path = _save(tmp_path, "float.tif", Image.fromarray(np.ones((4, 4), np.float32)))
    wide_path = _save(tmp_path, "wide.tif", Image.fromarray(np.full((4, 4), 70000, np.int32)))
    for path, reason in ((float_path, "mode F"), (wide_path, "outside 16-bit range")):
        with pytest.raises(ImageError, match=f"{path.name}: .*{reason}"):
            decode_image(path)
        with pytest.raises(ImageError, match=f"{path.name}: .*{reason}"):
            _mapper()({"file_name": str(path), "image_id": 0, "height": 4, "width": 4})
    assert ImageError is ImageError  # one error type for both stages


def test_pixel_limit_is_per_call_and_leaves_pillow_global_alone(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    path = _save(tmp_path, "wide.png", Image.new("RGB", (300, 10), (1, 2, 3)))
    with pytest.raises(ImageError, match=r"wide.png: 300x10 = 3000 pixels .*DATA.MAX_IMAGE_PIXELS=2999"):
        decode_image(path, max_pixels=2999)
    with pytest.raises(ImageError, match=r"wide.png: 300x10 = 3000 pixels .*DATASETS.MAX_IMAGE_PIXELS=2999"):
        _mapper(max_image_pixels=2999)({"file_name": str(path), "image_id": 0, "height": 10, "width": 300})
    assert decode_image(path, max_pixels=3000).shape == (3, 10, 300)
    assert Image.MAX_IMAGE_PIXELS == before
    # A limit above Pillow's own refusal threshold (twice its global) is honoured for the call.
    try:
        Image.MAX_IMAGE_PIXELS = 1000  # Pillow alone would refuse above 2000 pixels
        assert load_image(path, max_pixels=5000).size == (300, 10)
        with pytest.raises(ImageError, match="wide.png"):
            load_image(path, max_pixels=None)  # no limit of ours: Pillow's guard decides
        assert Image.MAX_IMAGE_PIXELS == 1000
    finally:
        Image.MAX_IMAGE_PIXELS = before


@pytest.mark.parametrize("kind", ["16bit", "cmyk", "rgba"])
def test_file_object_reads_like_the_file_and_errors_name_it(tmp_path, kind):
    # An upload held in memory (the HTTP server's case) goes through the same policy as a path.
    import io

    fmt = "JPEG" if kind == "cmyk" else "PNG"
    path = _save(tmp_path, f"{kind}.{fmt.lower()}", _image(kind), format=fmt)
    upload = io.BytesIO(path.read_bytes())
    np.testing.assert_array_equal(read_image_checked(upload), read_image(path))
    truncated = io.BytesIO(path.read_bytes()[:40])
    truncated.name = "upload.png"
    with pytest.raises(ImageError, match=r"^upload\.png: cannot decode image"):
        read_image_checked(truncated)
    with pytest.raises(ImageError, match=r"^<file object>: cannot decode image \(empty file"):
        read_image_checked(io.BytesIO())
