import os

import pytest
import torch

# Tests compare numbers; keep them repeatable and within the 2-core budget.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def toy_cls_root(tmp_path_factory):
    """A tiny toy ImageNet-layout tree (5 classes, 8 train / 2 val images of 32 px per class),
    made once per test module; the pretraining tests train on it."""
    from projects.toy_data import make_toy_data

    out = tmp_path_factory.mktemp("toycls")
    make_toy_data(out, kinds=("classification",), num_train_per_class=8, num_val_per_class=2, cls_size=32)
    return str(out / "imagenet")


@pytest.fixture
def toy(tmp_path):
    """Toy COCO data (4 train / 2 val images) in this test's tmp_path/toy."""
    from projects.toy_data import make_toy_data

    root = tmp_path / "toy"
    make_toy_data(root, kinds=["coco"], num_det_train=4, num_det_val=2)
    return root
