"""The uint8 input pipeline (issue 5): decoding straight to tensors, uint8 batches, and batch
normalisation on the device giving the numbers of the former per-sample float pipeline."""
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from resnet_det.checkpoint.backbone_file import PIXEL_MEAN_RGB, PIXEL_STD_RGB
from resnet_det.data.imagenet import ImageFolderDataset, build_train_loader, decode_image, load_image
from resnet_det.data.transforms import (
    MEAN,
    STD,
    MixCollate,
    NormalizeBatch,
    build_eval_transform,
    build_train_transform,
)
from resnet_det.utils.image import ImageError

# What the transforms ended with before batches became uint8.
PER_SAMPLE_FLOAT = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


def _photo(w=120, h=90, seed=0):
    """Smooth colour gradients with a few edges: decodes like a photo, unlike noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    chans = [np.sin(6 * x * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(5 * y * rng.uniform(0.5, 2))
             for _ in range(3)]
    arr = (np.stack(chans, -1) * 100 + 128).clip(0, 255).astype(np.uint8)
    arr[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 256, 3)
    return Image.fromarray(arr)


def _jpeg(path, image, **kw):
    image.save(path, "JPEG", quality=90, **kw)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos") / "train"
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(6):
            size = (120, 90) if i % 3 else (90, 120)
            _jpeg(root / f"c{c}" / f"{i}.JPEG", _photo(*size, seed=10 * c + i))
    return root


def test_decode_image_matches_pil_for_every_kind(tmp_path):
    rgb = _jpeg(tmp_path / "rgb.JPEG", _photo())
    gray = _jpeg(tmp_path / "gray.JPEG", _photo().convert("L"))
    cmyk = _jpeg(tmp_path / "cmyk.JPEG", _photo().convert("CMYK"))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = _jpeg(tmp_path / "rotated.JPEG", _photo(), exif=exif.tobytes())
    png = tmp_path / "rgba.png"
    _photo().convert("RGBA").save(png)
    for path in (rgb, gray, cmyk, rotated, png):
        expected = v2.functional.pil_to_tensor(load_image(path))
        got = decode_image(path)
        assert got.dtype == torch.uint8 and torch.equal(got, expected), path.name
    assert decode_image(rotated).shape == (3, 120, 90)


def test_decode_image_draft_still_shrinks_big_jpegs(tmp_path):
    big = _jpeg(tmp_path / "big.JPEG", _photo(1200, 800))
    assert decode_image(big, draft_short_side=256).shape == (3, 400, 600)  # 1/2: short side 400 >= 256
    assert decode_image(big, draft_short_side=480).shape == (3, 800, 1200)  # 1/2 would give 400 < 480


def test_decode_image_truncated_or_corrupt_jpeg_names_the_file(tmp_path):
    data = (_jpeg(tmp_path / "whole.JPEG", _photo())).read_bytes()
    truncated = tmp_path / "truncated.JPEG"
    truncated.write_bytes(data[: len(data) // 2])
    garbled = tmp_path / "garbled.JPEG"
    garbled.write_bytes(data[:400] + bytes(len(data) - 400))  # valid header, zeroed scan data
    for path in (truncated, garbled):
        with pytest.raises(ImageError, match=path.name) as info:
            decode_image(path)
        assert ".cpp" not in str(info.value)  # PIL's reason, not torchvision's source location


def test_decode_image_refuses_huge_header_and_empty_file(tmp_path):
    buf = io.BytesIO()
    _photo(64, 64).save(buf, "JPEG")
    big = tmp_path / "bomb.JPEG"
    big.write_bytes(buf.getvalue())
    with pytest.raises(ImageError, match=r"bomb.JPEG.*MAX_IMAGE_PIXELS"):
        decode_image(big, max_pixels=64 * 63)
    empty = tmp_path / "empty.JPEG"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.JPEG.*empty file"):
        decode_image(empty)


@pytest.mark.parametrize("recipe", ["paper", "modern"])
def test_uint8_batches_normalised_equal_the_per_sample_float_pipeline(tree, recipe):
    tf = build_train_transform(recipe, 32, (40, 64), color_jitter=0.4)
    ours = ImageFolderDataset(tree, tf, seed=3)
    before = ImageFolderDataset(tree, v2.Compose([tf, *PER_SAMPLE_FLOAT]), seed=3)
    loader = build_train_loader(ours, 4, 12, seed=3, num_workers=0)
    images, labels, indices = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 32, 32)
    old = torch.stack([before[(int(i), 0)][0] for i in indices])
    new = NormalizeBatch()(images)
    assert new.dtype == torch.float32 and (new - old).abs().max().item() <= 1e-6


@pytest.mark.parametrize("ten_crop", [False, True])
def test_eval_crop_before_normalising_gives_the_same_numbers(tree, ten_crop):
    ours = ImageFolderDataset(tree, build_eval_transform(32, 40, ten_crop=ten_crop))
    crops = [v2.TenCrop(32), torch.stack] if ten_crop else [v2.CenterCrop(32)]
    before = ImageFolderDataset(tree, v2.Compose([v2.ToImage(), v2.Resize(40, antialias=True), *PER_SAMPLE_FLOAT,
                                                  *crops]))
    for i in (0, 3):
        image = ours[i][0]
        assert image.dtype == torch.uint8
        assert (NormalizeBatch()(image[None])[0] - before[i][0]).abs().max().item() <= 1e-6


def test_mixing_uint8_then_normalising_equals_normalising_then_mixing(tree):
    tf = build_train_transform("modern", 32, color_jitter=0.0)
    ours = ImageFolderDataset(tree, tf)
    before = ImageFolderDataset(tree, v2.Compose([tf, *PER_SAMPLE_FLOAT]))
    keys = [(i, 0) for i in (5, 1, 8, 2)]
    mix = MixCollate(2, mixup_alpha=0.4, cutmix_alpha=1.0, seed=7)
    for first in range(3):  # three batches: both MixUp and CutMix get drawn
        ks = keys[first:] + keys[:first]
        images, soft, _ = mix([ours[k] for k in ks])
        old, old_soft, _ = mix([before[k] for k in ks])
        assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
        assert torch.equal(soft, old_soft)
        assert (NormalizeBatch()(images) - old).abs().max().item() <= 1e-5


def test_normalize_batch_matches_exported_pixel_statistics():
    # The detector normalises 0..255 pixels with the exported PIXEL_MEAN/PIXEL_STD: the same map.
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    mean = torch.tensor(PIXEL_MEAN_RGB).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD_RGB).view(3, 1, 1)
    expected = (images.float() - mean) / std
    assert torch.allclose(NormalizeBatch()(images), expected, atol=1e-5)
    float_images = v2.functional.to_dtype(images, torch.float32, scale=True)  # torchvision's 0..1
    kept = float_images.clone()
    assert torch.equal(NormalizeBatch()(float_images), NormalizeBatch()(images))
    assert torch.equal(float_images, kept)  # the input is left alone
    assert NormalizeBatch()(images[:, None]).shape == (2, 1, 3, 5, 7)  # 10-crop batches
    channels_last = NormalizeBatch()(images.contiguous(memory_format=torch.channels_last))
    assert channels_last.is_contiguous(memory_format=torch.channels_last)


def test_loader_batches_are_uint8_and_identical_for_any_worker_count(tree):
    ours = ImageFolderDataset(tree, build_train_transform("paper", 32, (40, 64)), seed=1)
    batches = {}
    for workers in (0, 2):
        it = iter(build_train_loader(ours, 4, 12, seed=1, num_workers=workers, persistent_workers=False,
                                     collate_fn=MixCollate(2)))
        batches[workers] = [next(it) for _ in range(3)]
    for (x0, y0, i0), (x2, y2, i2) in zip(batches[0], batches[2]):
        assert x0.dtype == torch.uint8 and torch.equal(x0, x2) and torch.equal(i0, i2) and torch.equal(y0, y2)


def test_decode_image_falls_back_to_pil_when_torchvision_refuses(tmp_path, monkeypatch):
    from resnet_det.data import imagenet as data

    path = _jpeg(tmp_path / "odd.JPEG", _photo())
    calls = []

    def refusing(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("decode_jpeg, some/file.cpp:1, Unsupported marker type")

    monkeypatch.setattr(data, "decode_jpeg", refusing)
    assert torch.equal(decode_image(path), v2.functional.pil_to_tensor(load_image(path)))
    assert len(calls) == 1  # the direct path was tried first


def test_normalize_batch_reusing_its_output_gives_the_same_numbers():
    fresh, reuse = NormalizeBatch(), NormalizeBatch(reuse_output=True)
    g = torch.Generator().manual_seed(0)
    first = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8, generator=g)
    out1 = reuse(first)
    assert torch.equal(out1, fresh(first))
    second = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8, generator=g)
    out2 = reuse(second)
    # The same tensor, overwritten: what reuse_output promises, and why only loops use it.
    assert out2.data_ptr() == out1.data_ptr() and torch.equal(out2, fresh(second))
    cl = second.contiguous(memory_format=torch.channels_last)
    out3 = reuse(cl)  # another memory format: a new tensor in that format, same values
    assert out3.is_contiguous(memory_format=torch.channels_last) and torch.equal(out3, fresh(second))
    mixed = torch.rand(4, 3, 5, 7, generator=g)  # float 0..1 (MixUp/CutMix batches), new shape
    assert torch.equal(reuse(mixed), fresh(mixed)) and torch.equal(reuse(mixed), fresh(mixed))
    assert torch.equal(reuse(first[:, None]), fresh(first[:, None]))  # 10-crop batches
