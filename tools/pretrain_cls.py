#!/usr/bin/env python
"""Classification pretraining of a ResNet/VGG-16 backbone (see docs/pretraining.md).

    python tools/pretrain_cls.py --config-file configs/pretrain/toy_resnet18.yaml [--resume]
        [--eval-only] [--num-gpus N] [--num-machines M --machine-rank R --dist-url U] [KEY VALUE ...]
"""
import json
import sys

from detectron2.engine import default_argument_parser, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from resnet_det.classification import (
    DataLoaderWorkerError,
    DivergenceError,
    UnreadableImageError,
    evaluate_only,
    load_pretrain_cfg,
    train,
)


def main(args):
    """Run in every process: set up logging, then train or evaluate."""
    cfg = load_pretrain_cfg(args.config_file, args.opts)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="resnet_det")
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="detectron2", abbrev_name="d2")
    result = evaluate_only(cfg) if args.eval_only else train(cfg, resume=args.resume)
    if comm.is_main_process():
        print(json.dumps(result, indent=2))
    return result


def cli(argv=None):
    parser = default_argument_parser(epilog=__doc__)
    # train_det.py's spelling too, so both stages take the same flags.
    parser.add_argument("--config", dest="config_file", metavar="FILE", help="same as --config-file")
    args = parser.parse_args(argv)
    try:
        load_pretrain_cfg(args.config_file, args.opts)  # fail on a bad config before spawning
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except (ValueError, KeyError, FileNotFoundError, DivergenceError, DataLoaderWorkerError,
            UnreadableImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
