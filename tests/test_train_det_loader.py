"""The resumable training loader: batches depend on (seed, iteration) only."""
import itertools

import numpy as np
import pytest
from torch.utils.data import DataLoader

from resnet_det.data.build import TrainBatches


def _dicts(n=11):
    # alternate landscape / portrait images so that aspect-ratio grouping matters
    return [
        {"file_name": f"{i}.jpg", "width": 200 if i % 3 else 100, "height": 150} for i in range(n)
    ]


def _mapper(record):
    # an "augmentation" drawn from numpy's global RNG, as detectron2's transforms do
    return (record["file_name"], float(np.random.uniform()))


def _take(dataset, n, num_workers=0):
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=lambda b: b)
    return list(itertools.islice(iter(loader), n))


def _batches(start_iter=0, **kw):
    options = dict(seed=3, batch_size=2, start_iter=start_iter)
    options.update(kw)
    return TrainBatches(_dicts(), _mapper, **options)


def test_resumed_stream_equals_the_rest_of_the_uninterrupted_one():
    full = _take(_batches(), 12)
    assert _take(_batches(start_iter=7), 5) == full[7:]


def test_independent_of_the_number_of_workers():
    assert _take(_batches(), 6, num_workers=2) == _take(_batches(), 6)


def test_groups_by_orientation_and_covers_the_dataset():
    batches = _take(_batches(), 30)
    wide = {f"{i}.jpg" for i, d in enumerate(_dicts()) if d["width"] > d["height"]}
    for batch in batches:
        names = {name for name, _ in batch}
        assert names <= wide or not names & wide
    seen = {name for batch in batches for name, _ in batch}
    assert len(seen) == len(_dicts())


def test_ranks_split_each_global_batch():
    ranks = [_take(_batches(rank=r, world_size=2), 4) for r in range(2)]
    single = _take(_batches(batch_size=4), 4)
    for step in range(4):
        assert ranks[0][step] + ranks[1][step] == single[step]


def test_other_seed_other_order():
    assert _take(_batches(seed=4), 5) != _take(_batches(), 5)


def test_unreadable_image_is_replaced_deterministically():
    def mapper(record):
        return None if record["file_name"] == "0.jpg" else _mapper(record)

    a = _take(TrainBatches(_dicts(), mapper, seed=3, batch_size=2), 12)
    b = _take(TrainBatches(_dicts(), mapper, seed=3, batch_size=2, start_iter=5), 7)
    assert a[5:] == b
    assert all(name != "0.jpg" for batch in a for name, _ in batch)


def test_mapper_error_names_the_sample():
    def mapper(record):
        raise OSError("truncated file")

    with pytest.raises(RuntimeError, match=r"training sample \d+\.jpg .*truncated file"):
        _take(TrainBatches(_dicts(), mapper, seed=3, batch_size=2), 1)
