"""Std of each residual branch's output for plain vs residual nets (the paper's Figure 7).

    python tools/layer_responses.py --study output/degradation      # models trained by the study
    python tools/layer_responses.py --random-init plain-20 resnet-20 plain-56 resnet-56

Writes a PNG (std vs block index, and sorted by magnitude) and a json of the stds beside it.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for projects/

from projects.paper.layer_responses import (  # noqa: E402
    init_layer_responses,
    plot_layer_responses,
    study_layer_responses,
)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", help="output directory of tools/degradation_study.py")
    which.add_argument("--random-init", nargs="+", metavar="SPEC", help="e.g. plain-20 resnet-20")
    parser.add_argument("--data", help="ImageNet-layout folder to take test images from")
    parser.add_argument("--cifar10", help="cifar-10-batches-bin directory to take test images from")
    parser.add_argument("--num-images", type=int, default=500)
    parser.add_argument("--out", help="PNG path (default: STUDY/layer_responses.png or "
                        "output/layer_responses_init.png)")  # fmt: skip
    args = parser.parse_args()

    try:
        if args.study:
            responses = study_layer_responses(args.study, args.num_images, args.data, args.cifar10)
            out = Path(args.out or Path(args.study) / "layer_responses.png")
        else:
            if args.data or args.cifar10:
                from projects.paper.degradation import load_study_data

                data = load_study_data(args.data, args.cifar10)
                images = data.normalize(data.test_images[: args.num_images])
            else:
                # Random-init nets with batch-statistics BN barely depend on the input; noise will do.
                images = torch.randn(args.num_images, 3, 32, 32)
            responses = init_layer_responses(args.random_init, images)
            out = Path(args.out or "output/layer_responses_init.png")
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    plot_layer_responses(responses, out)
    out.with_suffix(".json").write_text(json.dumps(responses, indent=1))
    for name, stds in responses.items():
        print(f"{name:<12} mean std {sum(stds) / len(stds):.3f}  per block: "
              + " ".join(f"{s:.2f}" for s in stds))  # fmt: skip
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
