import numpy as np
import pytest
import torch

from projects.paper.cifar import build_cifar_resnet
from projects.paper.cifar_data import RECORD_BYTES, Cifar10Binary, read_cifar10_bin
from resnet_det.models.resnet import ZeroPadShortcut

# The paper's Table 6 (CIFAR-10): depth -> parameters in millions.
PAPER_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}


def _num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", sorted(PAPER_PARAMS_M))
def test_parameter_counts_match_paper_table(depth):
    # Meta tensors: ResNet-1202's 19M weights are counted without allocating or initialising them.
    with torch.device("meta"):
        model = build_cifar_resnet(depth)
    got = _num_params(model) / 1e6
    assert got == pytest.approx(PAPER_PARAMS_M[depth], rel=0.02)


def test_layout_and_output_shapes():
    model = build_cifar_resnet(20)
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 9  # 3 stages of n = (20 - 2) / 6 blocks
    # 1 stem conv + 2 per block + fc = depth weighted layers.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 20
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert [tuple(feats[k].shape[1:]) for k in ("res2", "res3", "res4")] == [
        (16, 32, 32),
        (32, 16, 16),
        (64, 8, 8),
    ]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # Option A: the two downsampling blocks get the parameter-free zero-padding shortcut.
    assert sum(isinstance(b.shortcut, ZeroPadShortcut) for b in blocks) == 2
    assert model.arch == dict(
        name="cifar_resnet", depth=20, plain=False, norm="BN", shortcut="A", in_channels=3,
        num_classes=10,
    )  # fmt: skip


def test_plain_counterpart_has_no_shortcuts_and_same_weights():
    plain = build_cifar_resnet(20, plain=True)
    residual = build_cifar_resnet(20)
    assert all(b.plain and b.shortcut is None for s in plain.stages for b in s)
    # Option A adds no parameters, so plain and residual nets are the same size (as in the paper).
    assert _num_params(plain) == _num_params(residual)
    assert plain.state_dict().keys() == residual.state_dict().keys()
    # The shortcut matters: with the same weights the outputs differ.
    plain.load_state_dict(residual.state_dict())
    x = torch.randn(2, 3, 32, 32)
    plain.eval(), residual.eval()
    assert not torch.allclose(plain(x), residual(x))


@pytest.mark.parametrize("depth", [0, 7, 18, 21, "20"])
def test_bad_depth_names_valid_examples(depth):
    with pytest.raises(ValueError, match=r"6n\+2.*20, 32, 44, 56, 110, 1202"):
        build_cifar_resnet(depth)


def _write_fake_batch(path, labels, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], pixels], axis=1)
    records.tofile(path)
    return pixels


def test_cifar_binary_reader_labels_and_pixels(tmp_path):
    labels = [3, 0, 9, 5]
    pixels = _write_fake_batch(tmp_path / "test_batch.bin", labels)
    images, got_labels = read_cifar10_bin(tmp_path / "test_batch.bin")
    assert got_labels.tolist() == labels
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    # Channel planes in R, G, B order, each row-major: pixel (c, y, x) is byte c*1024 + y*32 + x.
    assert images[2, 1, 5, 7].item() == pixels[2, 1024 + 5 * 32 + 7]
    assert images[3, 2, 31, 31].item() == pixels[3, 3071]

    ds = Cifar10Binary(tmp_path, train=False, transform=lambda im: im.float() / 255)
    assert len(ds) == 4
    image, label = ds[2]
    assert label == 9 and image.dtype == torch.float32
    assert torch.equal(image, images[2].float() / 255)


def test_cifar_binary_train_split_concatenates_five_batches(tmp_path):
    for i in range(1, 6):
        _write_fake_batch(tmp_path / f"data_batch_{i}.bin", [i, i], seed=i)
    ds = Cifar10Binary(tmp_path, train=True)
    assert ds.targets.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_cifar_binary_truncated_file_is_named(tmp_path):
    path = tmp_path / "test_batch.bin"
    _write_fake_batch(path, [1, 2])
    with open(path, "r+b") as f:
        f.truncate(2 * RECORD_BYTES - 100)
    with pytest.raises(ValueError, match=r"test_batch\.bin.*truncated"):
        read_cifar10_bin(path)


def test_cifar_binary_missing_file_and_bad_label(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_batch_1\.bin"):
        Cifar10Binary(tmp_path, train=True)
    _write_fake_batch(tmp_path / "test_batch.bin", [1, 12])
    with pytest.raises(ValueError, match=r"record 1 has label byte 12"):
        read_cifar10_bin(tmp_path / "test_batch.bin")
