#!/usr/bin/env python
"""Classification pretraining of a ResNet/VGG-16 backbone (see docs/pretraining.md).

    python tools/pretrain_cls.py --config-file configs/pretrain/toy_resnet18.yaml [--resume]
        [--eval-only] [--num-gpus N] [--num-machines M --machine-rank R --dist-url U] [KEY VALUE ...]
"""
import json
import sys

from resnet_det.cli import add_debug_argument, in_worker, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from detectron2.engine import default_argument_parser, launch  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from resnet_det.classification import evaluate_only, load_pretrain_cfg, train  # noqa: E402


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
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    load_pretrain_cfg(args.config_file, args.opts)  # fail on a bad config before spawning
    world_size = args.num_gpus * args.num_machines
    # Expected errors (config, data, divergence) in worker processes: message alone, exit 2.
    launch(in_worker(main) if world_size > 1 else main, args.num_gpus,
           num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    sys.exit(run_cli(cli))
