"""Seeds and resumable sampling shared by both training stages (torch and numpy; no detectron2).

Randomness is a function of the sample (a seed hashed from keys such as (seed, epoch, index)),
not of the process that draws it: any number of loader workers gives the same samples, and a
resumed run reproduces an uninterrupted one without decoding the samples it skips.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["derived_seed", "seeded_rngs", "TrainSampler"]


def derived_seed(*keys: int) -> int:
    """A 32-bit seed that depends on every key (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rngs(seed: int):
    """Seed Python's, numpy's and torch's CPU RNGs for the block, then restore them.

    Only the CPU generator: ``torch.manual_seed`` would also seed the (lazy) CUDA, XPU and MTIA
    generators, which records a stack trace each call (~1 ms) and is not restored after.
    """
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class TrainSampler(Sampler):
    """Endless stream of ``(index, epoch)`` for one rank, starting at sample ``start``.

    Each epoch is a permutation drawn from ``derived_seed(seed, epoch)``, padded to a multiple
    of ``world_size`` and split ``rank::world_size`` (the DistributedSampler contract: disjoint
    shards that cover the data). Only the first ``samples_per_epoch`` of a rank's shard are
    used (whole optimizer steps, like ``drop_last``).
    """

    def __init__(self, size: int, samples_per_epoch: int, *, seed=0, rank=0, world_size=1, start=0):
        if samples_per_epoch <= 0 or samples_per_epoch * world_size > size + world_size:
            raise ValueError(f"samples_per_epoch={samples_per_epoch} does not fit {size} samples over "
                             f"{world_size} ranks")
        self.size, self.samples_per_epoch = size, samples_per_epoch
        self.seed, self.rank, self.world_size, self.start = seed, rank, world_size, start

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's sample indices for ``epoch``, in order."""
        g = torch.Generator().manual_seed(derived_seed(self.seed, epoch))
        order = torch.randperm(self.size, generator=g)
        padded = -(-self.size // self.world_size) * self.world_size
        order = torch.cat([order, order[: padded - self.size]])
        return order[self.rank :: self.world_size][: self.samples_per_epoch].tolist()

    def __iter__(self):
        epoch, offset = divmod(self.start, self.samples_per_epoch)
        while True:
            for index in self.epoch_indices(epoch)[offset:]:
                yield index, epoch
            epoch, offset = epoch + 1, 0
