"""Pretraining input pipeline throughput: ours vs torchvision ``ImageFolder`` + classic PIL transforms.

    python benchmarks/bench_data.py [--workers 2] [--batch 64] [--size 500 375] [--ablation]
                                    [--data DIR] [--kinds paper modern eval]

Writes benchmarks/results/data_pipeline_<W>x<H>.json.

Both pipelines decode the same folder of JPEGs (written to a temporary directory: ImageNet-like
sizes and smooth, photo-like content at quality 90, since noise JPEGs decode unrealistically
slowly) through a ``DataLoader`` with the same workers, batch and crop size, for the paper's
recipe (random short side in 256..480, 224 crop, flip, colour jitter), the modern one
(RandomResizedCrop, flip) and the evaluation transform (short side 256, centre crop). One timed
call reads ``--batches`` batches through a fresh loader; the contenders alternate in one
process and the median over ``--repeats`` calls after ``--warmup`` is reported.

Our loader yields uint8 batches; training moves them to the device and normalises them there
(``NormalizeBatch``), which on a GPU costs next to nothing. "ours" is the loader alone, as it
feeds a GPU; "ours + CPU normalise" also normalises each batch in this (the main) process, as
training on a CPU does (into the previous batch's tensor, ``NormalizeBatch(reuse_output=True)``),
which on a 2-core machine takes CPU time from the workers. The classic pipeline normalises per
sample in its workers. ``--ablation`` adds ours normalising into a fresh tensor per batch, ours
with the former per-sample float conversion in the workers (float batches; the former evaluation order
normalised the whole resized image before cropping), and ours without the JPEG draft (which
only acts on photos at least twice the resize target: try ``--size 1600 1200``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, time_alternating, write_result  # noqa: E402

from resnet_det.data.imagenet import ImageFolderDataset  # noqa: E402
from resnet_det.data.transforms import (  # noqa: E402
    MEAN,
    STD,
    MixCollate,
    NormalizeBatch,
    build_eval_transform,
    build_train_transform,
)


def photo_like(rng, width, height) -> Image.Image:
    """Smooth multi-scale colour field, a few blurred shapes and sensor-like grain."""
    img = np.full((height, width, 3), 128.0, np.float32)
    for cells, amp in ((4, 90), (12, 50), (40, 30), (120, 20), (250, 12)):
        small = rng.integers(0, 256, (max(2, cells * height // width), cells, 3), dtype=np.uint8)
        up = Image.fromarray(small).resize((width, height), Image.BICUBIC)
        img += amp * (np.asarray(up, np.float32) / 127.5 - 1)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.integers(3, 9)):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = (x0, y0, x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2)))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    arr = np.asarray(im.filter(ImageFilter.GaussianBlur(1.0)), np.float32) + rng.normal(0, 7, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_folder(root: Path, classes: int, per_class: int, size, quality: int, seed=0) -> int:
    """``root/<class>/<i>.JPEG``; one image in four is portrait (size swapped). Returns bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for c in range(classes):
        (root / f"n{c:08d}").mkdir(parents=True)
        for i in range(per_class):
            w, h = size if i % 4 else size[::-1]
            path = root / f"n{c:08d}" / f"{i:04d}.JPEG"
            photo_like(rng, w, h).save(path, quality=quality)
            total += path.stat().st_size
    return total


class RandomShortSide:
    """Classic "scale augmentation": PIL resize of the short side to a random length in [lo, hi]."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __call__(self, img):
        return T.functional.resize(img, int(torch.randint(self.lo, self.hi + 1, ())))


def classic_transform(kind, crop, resize_range, test_resize, jitter):
    """torchvision.transforms (v1) on PIL images, ending in ToTensor + Normalize."""
    tail = [T.ToTensor(), T.Normalize(MEAN, STD)]
    colour = [T.ColorJitter(jitter, jitter, jitter)] if jitter > 0 else []
    if kind == "paper":
        return T.Compose([RandomShortSide(*resize_range), T.RandomCrop(crop), T.RandomHorizontalFlip(), *colour, *tail])
    if kind == "modern":
        return T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), *colour, *tail])
    return T.Compose([T.Resize(test_resize), T.CenterCrop(crop), *tail])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="JPEG folder (<class>/<image>) to read, written there first if missing "
                   "(default: a generated one in a temporary directory)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"))
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=8, help="batches per timed call (whole per-worker rounds)")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--resize-range", type=int, nargs=2, default=(256, 480))
    p.add_argument("--test-resize", type=int, default=256)
    p.add_argument("--jitter", type=float, default=0.4, help="colour jitter of the paper recipe (modern: none)")
    p.add_argument("--kinds", nargs="+", default=["paper", "modern", "eval"], choices=["paper", "modern", "eval"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    p.add_argument("--ablation", action="store_true",
                   help="also time ours with per-sample float conversion, and without the JPEG draft")
    p.add_argument("--normalise-only", action="store_true",
                   help="only time NormalizeBatch on one uint8 batch (--batch x 3 x --crop^2): "
                        "into a fresh tensor vs into the previous call's (reuse_output)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.normalise_only:
        return normalise_only(args)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp) / "train"
        if not root.exists():
            start = time.perf_counter()
            size = write_folder(root, args.classes, args.per_class, tuple(args.size), args.quality)
            print(f"wrote {args.classes * args.per_class} JPEGs ({args.size[0]}x{args.size[1]}, q{args.quality}, "
                  f"{size / (args.classes * args.per_class) / 1e3:.0f} kB each) in {time.perf_counter() - start:.0f}s")
        results = run(root, args)

    rows, payload = [], {}
    for kind, r in results.items():
        base = r["img_per_s"]["classic"]
        for name, ips in r["img_per_s"].items():
            rows.append({"recipe": kind, "pipeline": name, "img/s": ips, "vs classic": ips / base})
        payload[kind] = r
    print(f"{args.workers} workers, batch {args.batch}, {args.batches} batches per call, "
          f"median of {args.repeats} alternated calls; main process {args.threads} thread(s)")
    print_table(rows, ["recipe", "pipeline", "img/s", "vs classic"])
    path = write_result(f"data_pipeline_{args.size[0]}x{args.size[1]}",
                        {"args": vars(args), "command": " ".join(sys.argv), "results": payload})
    print(f"wrote {path}")


def normalise_only(args):
    """NormalizeBatch on one uint8 batch, in the main process's threads: fresh vs reused output."""
    images = torch.randint(0, 256, (args.batch, 3, args.crop, args.crop), dtype=torch.uint8)
    fresh, reuse = NormalizeBatch(), NormalizeBatch(reuse_output=True)
    seconds = time_alternating({"fresh output": lambda: fresh(images), "reused output": lambda: reuse(images)},
                               repeats=max(args.repeats, 7), warmup=2)
    print(f"NormalizeBatch, uint8 batch {tuple(images.shape)}, {args.threads} thread(s), median of "
          f"{max(args.repeats, 7)} alternated calls")
    print_table([{"output": k, "ms per batch": 1e3 * v, "vs fresh": seconds["fresh output"] / v}
                 for k, v in seconds.items()], ["output", "ms per batch", "vs fresh"])
    path = write_result("normalise_batch", {"args": vars(args), "command": " ".join(sys.argv), "seconds": seconds})
    print(f"wrote {path}")


def run(root: Path, args) -> dict:
    """Time each recipe's contenders (alternated); returns seconds and img/s per contender."""
    crop, rr, n = args.crop, tuple(args.resize_range), args.batch * args.batches
    # As the engine normalises on a CPU: into the previous batch's tensor (reuse_output).
    normalizers = {"reuse": NormalizeBatch(reuse_output=True), "fresh": NormalizeBatch()}
    per_sample_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    results = {}
    for kind in args.kinds:
        jitter = args.jitter if kind == "paper" else 0.0
        theirs = datasets.ImageFolder(str(root), classic_transform(kind, crop, rr, args.test_resize, jitter))
        # Ours exactly as engine.build_datasets builds it (the JPEG draft limit included).
        if kind == "eval":
            ours = ImageFolderDataset(root, build_eval_transform(crop, args.test_resize),
                                      draft_short_side=args.test_resize)
            old = v2.Compose([v2.ToImage(), v2.Resize(args.test_resize, antialias=True), *per_sample_float,
                              v2.CenterCrop(crop)])
        else:
            tf = build_train_transform(kind, crop, rr, jitter)
            ours = ImageFolderDataset(root, tf, draft_short_side=rr[1] if kind == "paper" else None)
            old = v2.Compose([tf, *per_sample_float])
        ours_float = ImageFolderDataset(root, old, draft_short_side=ours.draft_short_side)
        epoch = [0]

        def keys(train):
            # A fresh random draw of n samples per call; training samples carry an epoch.
            epoch[0] += 1
            g = torch.Generator().manual_seed(epoch[0])
            idx = torch.randint(len(theirs), (n,), generator=g).tolist()
            return [(i, epoch[0]) for i in idx] if train else idx

        def loader(dataset, sampler, collate=None):
            return DataLoader(dataset, batch_size=args.batch, sampler=sampler, num_workers=args.workers,
                              collate_fn=collate, generator=torch.Generator().manual_seed(epoch[0]))

        def consume(dataset, train, norm):
            ours_style = dataset is not theirs  # keyed by (index, epoch), collated by MixCollate

            def call():
                collate = MixCollate(len(theirs.classes)) if train and ours_style else None
                for images, *_ in loader(dataset, keys(train and ours_style), collate):
                    if norm:
                        images = normalizers[norm](images)
                    assert images.shape[0] == args.batch
            return call

        train = kind != "eval"
        contenders = {"classic": consume(theirs, train, None), "ours": consume(ours, train, None),
                      "ours + CPU normalise": consume(ours, train, "reuse")}
        if args.ablation:
            name = "ours, per-sample float" if train else "ours, normalise before crop"
            contenders[name] = consume(ours_float, train, None)
            contenders["ours + CPU normalise, fresh output"] = consume(ours, train, "fresh")
            if ours.draft_short_side:
                no_draft = ImageFolderDataset(root, ours.transform)
                contenders["ours, no JPEG draft"] = consume(no_draft, train, None)
        print(f"timing {kind}: {', '.join(contenders)}", flush=True)
        seconds = time_alternating(contenders, repeats=args.repeats, warmup=args.warmup)
        results[kind] = {"seconds_per_call": seconds, "images_per_call": n,
                         "img_per_s": {k: n / s for k, s in seconds.items()},
                         "ratio_over_classic": {k: seconds["classic"] / s for k, s in seconds.items()}}
    return results


if __name__ == "__main__":
    main()
