"""A training loader whose batches are a pure function of (seed, iteration): a resumed run sees the
data an uninterrupted one would (detectron2's restarts its sampler and augments with per-worker
RNGs), for any DATALOADER.NUM_WORKERS; docs/design.md describes exact resume.
"""
from __future__ import annotations

import logging

import torch
from detectron2.data import get_detection_dataset_dicts
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from resnet_det.data.samplers import derived_seed, seeded_rngs

__all__ = ["TrainBatches", "build_resumable_train_loader"]

logger = logging.getLogger(__name__)
# How many other images to try, in dataset order, when the mapper skips an unreadable one.
_MAX_SUBSTITUTES = 10


class TrainBatches(IterableDataset):
    """Endless per-rank batches (lists of mapped dataset dicts), starting at ``start_iter``.

    Global batch ``b`` holds ``batch_size * world_size`` consecutive images of the stream
    (per orientation group); rank ``r`` maps its slice of it. Dataloader worker ``w`` of ``n``
    produces batches ``start_iter + w``, ``start_iter + w + n``, ..., which PyTorch's loader
    returns in order.
    """

    def __init__(self, dataset_dicts, mapper, *, seed: int, batch_size: int, start_iter: int = 0,
                 rank: int = 0, world_size: int = 1, aspect_ratio_grouping: bool = True):
        self.dataset = DatasetFromList(dataset_dicts, copy=False)
        self.mapper = mapper
        self.seed = int(seed)
        self.batch_size = batch_size
        self.start_iter = start_iter
        self.rank, self.world_size = rank, world_size
        self.groups = [0] * len(dataset_dicts)
        if aspect_ratio_grouping:
            if not all("width" in d and "height" in d for d in dataset_dicts):
                raise ValueError("DATALOADER.ASPECT_RATIO_GROUPING needs 'width' and 'height' in every "
                                 "dataset dict; set it False or register the dataset with image sizes")
            self.groups = [int(d["width"] > d["height"]) for d in dataset_dicts]

    def index_batches(self):
        """Endless global batches of ``(position in stream, dataset index)`` pairs."""
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        total = self.batch_size * self.world_size
        buckets = ([], [])
        position = 0
        while True:
            for index in torch.randperm(len(self.dataset), generator=generator).tolist():
                bucket = buckets[self.groups[index]]
                bucket.append((position, index))
                position += 1
                if len(bucket) == total:
                    yield list(bucket)
                    bucket.clear()

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        first = self.rank * self.batch_size
        for b, batch in enumerate(self.index_batches()):
            if b >= self.start_iter and (b - self.start_iter) % num_workers == worker:
                yield [self.map(*item) for item in batch[first : first + self.batch_size]]

    def map(self, position: int, index: int):
        """The mapped dataset dict for one stream position (its augmentation seeded by it)."""
        for attempt in range(_MAX_SUBSTITUTES + 1):
            # A skipped (unreadable) image is replaced by the next one in dataset order.
            i = (index + attempt) % len(self.dataset)
            record = self.dataset[i]
            try:
                with seeded_rngs(derived_seed(self.seed, position, attempt)):
                    mapped = self.mapper(record)
            except Exception as e:
                raise RuntimeError(f"training sample {record.get('file_name', '?')} (dataset index {i}) "
                                   f"failed in the data loader: {type(e).__name__}: {e}") from e
            if mapped is not None:
                return mapped
        raise RuntimeError(f"{_MAX_SUBSTITUTES + 1} consecutive training images from dataset index {index} "
                           "were unreadable; run the dataset check and fix or remove those files")


def build_resumable_train_loader(cfg, mapper, *, seed: int, start_iter: int = 0):
    """The training loader of ``cfg`` (DATASETS.TRAIN, SOLVER.IMS_PER_BATCH, DATALOADER.*),
    yielding the batches of iterations ``start_iter, start_iter + 1, ...``."""
    dataset_dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    )
    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not divisible by the "
                         f"{world_size} processes")
    batches = TrainBatches(dataset_dicts, mapper, seed=seed, batch_size=cfg.SOLVER.IMS_PER_BATCH // world_size,
                           start_iter=start_iter, rank=comm.get_rank(), world_size=world_size,
                           aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING)
    logger.info(f"Training loader: {len(dataset_dicts)} images, {batches.batch_size} per process, "
                f"seed {seed}, starting at iteration {start_iter}")
    return DataLoader(
        batches,
        batch_size=None,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
        # Its own generator: creating the iterator draws a seed, which must not come from
        # the global RNG (that would shift the random numbers of the iteration it happens in).
        generator=torch.Generator().manual_seed(seed),
    )
