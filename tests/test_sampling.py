"""The shared seeding and resumable sampler (resnet_det.data.samplers)."""
import random

import numpy as np
import torch

from resnet_det.data.samplers import TrainSampler, derived_seed, seeded_rngs


def test_seeded_rngs_repeat_inside_and_restore_outside():
    torch.manual_seed(1)
    before = torch.rand(3)
    torch.manual_seed(1)
    draws = []
    for _ in range(2):
        with seeded_rngs(derived_seed(7, 0, 5)):
            draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]  # the same sample seed gives the same augmentation
    assert torch.equal(torch.rand(3), before)  # the caller's stream is untouched
    assert derived_seed(7, 0, 5) != derived_seed(7, 5, 0) and derived_seed(7, 0, 5) < 2**32


def test_train_sampler_resumes_mid_epoch_and_shards_ranks():
    full = TrainSampler(10, 4, seed=3, rank=1, world_size=2)
    stream = [next(it) for it in [iter(full)] for _ in range(11)]
    resumed = iter(TrainSampler(10, 4, seed=3, rank=1, world_size=2, start=6))
    assert [next(resumed) for _ in range(5)] == stream[6:]
    assert [e for _, e in stream] == [0] * 4 + [1] * 4 + [2] * 3
    shards = [set(TrainSampler(10, 5, seed=3, rank=r, world_size=2).epoch_indices(0)) for r in (0, 1)]
    assert shards[0] | shards[1] == set(range(10)) and not shards[0] & shards[1]
