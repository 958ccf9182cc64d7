"""Train plain and residual CIFAR-style nets with one recipe and plot the paper's Figure 6.

    python tools/degradation_study.py                       # toy shapes, ~10 min on 2 CPU cores
    python tools/degradation_study.py --data /path/imagenet_subset --image-size 32
    python tools/degradation_study.py --cifar10 datasets/cifar-10-batches-bin \\
        --models plain-20 plain-56 resnet-20 resnet-56 --iterations 64000 --batch-size 128 \\
        --eval-period 1000

Writes OUT/degradation.png (training error thin, test error bold), OUT/curves.json and one
OUT/<model>.safetensors per model (input of tools/layer_responses.py).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for projects/

from projects.paper.degradation import (  # noqa: E402
    DEFAULT_MODELS,
    STUDY_JSON,
    STUDY_PNG,
    StudyRecipe,
    load_study_data,
    run_degradation_study,
)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=list(DEFAULT_MODELS), help="plain-DEPTH / resnet-DEPTH"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        default="output/degradation/toy_data",
        help="ImageNet-layout folder with train/ and val/; generated from toy shapes if missing",
    )
    source.add_argument("--cifar10", help="cifar-10-batches-bin directory (binary release)")
    parser.add_argument("--out", default="output/degradation", help="output directory")
    parser.add_argument(
        "--image-size", type=int, help="folder images are resized to this (default 16: the toy "
        "shapes stay recognisable and six nets train in ~10 CPU minutes)",
    )  # fmt: skip
    parser.add_argument("--toy-train-per-class", type=int, default=200)
    parser.add_argument("--toy-val-per-class", type=int, default=50)
    defaults = StudyRecipe()
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument(
        "--lr-steps", type=float, nargs="*", default=list(defaults.lr_steps),
        help="fractions of --iterations where the lr is divided by 10",
    )  # fmt: skip
    parser.add_argument("--eval-period", type=int, default=defaults.eval_period)
    parser.add_argument("--no-augment", action="store_true", help="no crop/flip augmentation")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is faster on a "
        "CPU shared with other jobs)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    try:
        data = load_study_data(
            None if args.cifar10 else args.data,
            args.cifar10,
            image_size=args.image_size,
            toy_train_per_class=args.toy_train_per_class,
            toy_val_per_class=args.toy_val_per_class,
            seed=args.seed,
        )
        recipe = StudyRecipe(
            iterations=args.iterations,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            lr_steps=tuple(args.lr_steps),
            eval_period=args.eval_period,
            augment=not args.no_augment,
            seed=args.seed,
        )
        result = run_degradation_study(args.models, data, args.out, recipe)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(f"\n{'model':<12} {'train err %':>11} {'test err %':>10}  (last point; train = mean of "
          f"the last {recipe.eval_period} minibatches)")  # fmt: skip
    for name, m in result["models"].items():
        print(f"{name:<12} {100 * m['train_error'][-1]:11.1f} {100 * m['test_error'][-1]:10.1f}")
    print(f"\nwrote {args.out}/{STUDY_PNG}, {args.out}/{STUDY_JSON} and weights; "
          f"wall time {time.perf_counter() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
