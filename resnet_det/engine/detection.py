"""Training and evaluation of Faster R-CNN with this package's backbones: detectron2's
``DefaultTrainer`` with our checkpointer, evaluators and an exactly resumable data loader
(its ``build_*`` methods overridden). ``tools/train_det.py`` calls :func:`launch_from_args`.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import weakref
from unittest import mock

import torch
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer, create_ddp_model, default_setup
from detectron2.engine import defaults as d2_defaults
from detectron2.utils import comm
from detectron2.utils.logger import create_small_table, setup_logger

from resnet_det.checkpoint.detection import ResNetDetCheckpointer
from resnet_det.config import ConfigError, learning_rate_warning, load_config, schedule_warnings
from resnet_det.config.defaults import RESNET_BACKBONES
from resnet_det.data.build import build_resumable_train_loader
from resnet_det.data.datasets import check_datasets, register_all_datasets
from resnet_det.data.mapper import RobustDatasetMapper
from resnet_det.engine.hooks import (
    PeriodicWriter,
    PlotCurves,
    ResumableJSONWriter,
    SeedEachIteration,
    TrainingDivergedError,
    build_writers,
    divergence_message,
)
from resnet_det.engine.launch import (
    cap_workers,
    launch_main,
    quiet_config_dump,
    resolve_device,
    training_argument_parser,
)
from resnet_det.evaluation.evaluators import build_evaluator
from resnet_det.utils.cli import run_cli, silence_known_warnings
from resnet_det.utils.files import write_json
from resnet_det.utils.plotting import plot_detection_curves

__all__ = ["Trainer", "TrainingDivergedError", "setup", "main", "launch_from_args", "train_detector",
           "check_num_classes", "command_line", "RESULTS_FILE"]

logger = logging.getLogger("resnet_det")
# Final metrics of a training run or of --eval-only, written to OUTPUT_DIR.
RESULTS_FILE = "eval_results.json"
OUTPUT_CONFIG = "config.yaml"  # the full config of a run, written by detectron2's default_setup


class Trainer(DefaultTrainer):
    """detectron2's ``DefaultTrainer`` with: :class:`ResNetDetCheckpointer` (safe loading of
    backbone/torchvision/detector weights, atomic saves), evaluators by ``evaluator_type``, the
    robust dataset mapper, ``curves.png`` after each evaluation and at the end, and exact resume
    (data order and RNGs depend only on the seed and the iteration; the seed is in checkpoints)."""

    def __init__(self, cfg):
        # The run's seed: SEED, or one random value shared by all processes (kept on resume).
        self.seed = cfg.SEED if cfg.SEED >= 0 else int(comm.shared_random_seed())
        # detectron2 passes the local rank as DDP's device_ids, which DDP refuses for a CPU model.
        ddp = functools.partial(create_ddp_model, device_ids=None) if cfg.MODEL.DEVICE == "cpu" else create_ddp_model
        with mock.patch.object(d2_defaults, "create_ddp_model", ddp):
            super().__init__(cfg)

    def build_hooks(self):
        """detectron2's hooks around :class:`ResNetDetCheckpointer` (replacing its checkpointer),
        with per-iteration seeding, SOLVER.LOG_PERIOD and curves.png."""
        self.checkpointer = ResNetDetCheckpointer(self.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self),
                                                  max_to_keep=self.cfg.SOLVER.MAX_CHECKPOINTS_TO_KEEP)
        ret = [SeedEachIteration()] + super().build_hooks()
        if comm.is_main_process():  # detectron2 writes every 20 iterations; SOLVER.LOG_PERIOD here
            ret[-1] = PeriodicWriter(self.build_writers(), period=self.cfg.SOLVER.LOG_PERIOD)
        return ret + [PlotCurves(self.cfg.OUTPUT_DIR, self.cfg.TEST.EVAL_PERIOD, plot_detection_curves)]

    def build_writers(self):
        """detectron2's writers, built once, with a metrics.json that a resume trims."""
        if not hasattr(self, "_writers"):
            self._writers = build_writers(self.cfg.OUTPUT_DIR, self.max_iter)
        return self._writers

    def build_train_loader(self, cfg, start_iter: int = 0):
        """Batches of iterations ``start_iter, start_iter + 1, ...`` (see ``loader.py``)."""
        return build_resumable_train_loader(cfg, RobustDatasetMapper(cfg, True), seed=self.seed, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=RobustDatasetMapper(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name):
        return build_evaluator(cfg, dataset_name)

    def resume_or_load(self, resume=True):
        """Load MODEL.WEIGHTS, or with ``resume`` the last checkpoint of OUTPUT_DIR (weights,
        optimizer, scheduler, iteration, seed); the data stream then continues where it was."""
        super().resume_or_load(resume=resume)
        self.checkpointer.remove_interrupted_saves()
        for writer in getattr(self, "_writers", ()):
            if isinstance(writer, ResumableJSONWriter):
                writer.trim(self.start_iter - 1)  # lines logged after the checkpoint come again
        if self.start_iter > 0:
            self._trainer.reset_data_loader(lambda: self.build_train_loader(self.cfg, start_iter=self.start_iter))

    def run_step(self):
        try:
            super().run_step()
        except FloatingPointError as e:
            # A NaN/inf loss (detectron2's message gives the iteration and every loss term)
            # or NaN/inf boxes inside the model. Nothing more may be saved: the last
            # checkpoint holds the last good weights.
            self.checkpointer.save_to_disk = False
            has = self.checkpointer.has_checkpoint()
            recorded = {k: v for k, (v, _) in self.storage.latest().items() if k.startswith("loss")}
            raise TrainingDivergedError(divergence_message(
                f"{e}\n", self.iter, recorded, self.checkpointer.get_checkpoint_file() if has else None,
                "Lower SOLVER.BASE_LR or lengthen SOLVER.WARMUP_ITERS, then start again (or --resume from it)."
            )) from None

    def state_dict(self):
        ret = super().state_dict()
        ret["seed"] = self.seed
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.seed = int(state_dict.get("seed", self.seed))


def setup(args):
    """The validated, frozen config of ``args`` (config file + KEY VALUE overrides), with
    detectron2's logging and OUTPUT_DIR/config.yaml set up."""
    cfg = load_config(args.config_file, args.opts)
    cfg.MODEL.DEVICE, device_note = resolve_device(cfg.MODEL.DEVICE)
    cfg.DATALOADER.NUM_WORKERS, workers_note = cap_workers(cfg.DATALOADER.NUM_WORKERS, comm.get_local_size())
    cfg.freeze()
    quiet_config_dump(OUTPUT_CONFIG)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="resnet_det")
    for note in (device_note, workers_note):
        if note:
            logger.info(note)
    if not args.eval_only:
        for warning in [learning_rate_warning(cfg)] + schedule_warnings(cfg):
            if warning:
                logger.warning(warning)
    return cfg


def check_can_train(cfg, resume: bool) -> None:
    """Refuse a run that is known to diverge: our ResNet from random init with FrozenBN."""
    if (
        cfg.MODEL.BACKBONE.NAME in RESNET_BACKBONES
        and cfg.MODEL.RESNETS.NORM == "FrozenBN"
        and not cfg.MODEL.WEIGHTS
        and not (resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")))
    ):
        raise ConfigError("MODEL.WEIGHTS is empty and MODEL.RESNETS.NORM is FrozenBN: a detector trained from "
                          "random initialisation with frozen BN diverges. Set MODEL.WEIGHTS to a backbone "
                          "file from tools/pretrain_cls.py (or a torchvision checkpoint), or train from "
                          "scratch with MODEL.RESNETS.NORM GN (or BN).")


def _used_datasets(cfg, eval_only):
    return list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))


def check_num_classes(cfg) -> None:
    """Raise ConfigError when MODEL.ROI_HEADS.NUM_CLASSES differs from the number of classes of
    a registered dataset in DATASETS.TRAIN/TEST whose class list is known before loading (VOC
    layouts, detectron2's builtin names); COCO json files are checked when they are read."""
    want = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    problems = []
    for name in dict.fromkeys(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)):
        classes = getattr(MetadataCatalog.get(name), "thing_classes", None)
        if classes is not None and len(classes) != want:
            problems.append(f"  dataset '{name}' has {len(classes)} classes {list(classes)[:10]}")
    if problems:
        raise ConfigError(f"MODEL.ROI_HEADS.NUM_CLASSES is {want}, but\n" + "\n".join(problems) + "\n"
                          "Set MODEL.ROI_HEADS.NUM_CLASSES to the dataset's number of classes (background "
                          "is not counted), and train and test on datasets with the same class list.")


def write_results(cfg, results) -> str | None:
    """Log the final metric table and write it to OUTPUT_DIR/eval_results.json (main process)."""
    if not comm.is_main_process() or not results:
        return None
    # One dataset gives {task: metrics}; several give {dataset: {task: metrics}}.
    if len(cfg.DATASETS.TEST) == 1:
        results = {cfg.DATASETS.TEST[0]: results}
    flat = {dataset: {task: {k: float(v) for k, v in m.items()} for task, m in tasks.items()}
            for dataset, tasks in results.items()}
    for dataset, tasks in flat.items():
        for task, metrics in tasks.items():
            main = {k: v for k, v in metrics.items() if "-" not in k}
            logger.info(f"Final {task} metrics on {dataset}:\n" + create_small_table(main))
    path = os.path.join(cfg.OUTPUT_DIR, RESULTS_FILE)
    write_json(path, flat)
    logger.info(f"Final metrics written to {path}")
    return path


def main(args, datasets_checked: bool = False):
    """Train (or with ``--eval-only`` evaluate) in this process; called by ``launch``.
    ``datasets_checked``: :func:`launch_from_args` already ran check_datasets on this machine."""
    cfg = setup(args)
    register_all_datasets(cfg)
    if not datasets_checked:
        check_datasets(_used_datasets(cfg, args.eval_only))
    if args.eval_only:
        model = Trainer.build_model(cfg)
        ResNetDetCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        if getattr(args, "deploy", False):
            from resnet_det.modeling.inference import optimize_detector_for_inference  # noqa: I001

            optimize_detector_for_inference(model)
            logger.info("Deploy step applied: BN folded, channels_last, fast post-processing and "
                        "RoI pooling (detections equal up to float rounding)")
        results = Trainer.test(cfg, model)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        results = getattr(trainer, "_last_eval_results", None)
    write_results(cfg, results)
    return results


def launch_from_args(args):
    """Validate the config in this process (before any worker starts or any file is written),
    then run :func:`main` in ``--num-gpus`` processes per machine through detectron2's ``launch``.
    """
    if getattr(args, "deploy", False) and not args.eval_only:
        raise ConfigError("--deploy only applies to --eval-only (training needs the unfolded model)")
    cfg = load_config(args.config_file, args.opts)
    if not args.eval_only:
        check_can_train(cfg, args.resume)
    # Every dataset problem and a wrong NUM_CLASSES before any process starts or file is written.
    register_all_datasets(cfg)
    check_datasets(_used_datasets(cfg, args.eval_only))
    check_num_classes(cfg)
    if args.num_gpus * args.num_machines > 1 and cfg.MODEL.DEVICE == "cpu" and torch.cuda.is_available():
        # detectron2's launch picks NCCL whenever CUDA is visible; CPU processes need gloo.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return launch_main(main, args, True)


def train_detector(config_file, opts=(), *, eval_only=False, resume=False, num_gpus=1, num_machines=1,
                   machine_rank=0, dist_url="auto"):
    """:func:`launch_from_args` with plain arguments, for library use: train (or evaluate) the
    detector of ``config_file`` + ``opts`` (KEY VALUE ...); the metrics land in
    OUTPUT_DIR/eval_results.json."""
    return launch_from_args(argparse.Namespace(
        config_file=config_file, opts=list(opts), eval_only=eval_only, resume=resume, num_gpus=num_gpus,
        num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url))


def command_line(argv=None, doc=None) -> int:
    """``resnet-det-train`` (tools/train_det.py): detectron2's training flags, ``--deploy``, then
    train or evaluate; the exit status (2 with the message of an expected error)."""
    silence_known_warnings()

    def run():
        parser = training_argument_parser(doc or __doc__)
        parser.add_argument("--deploy", action="store_true",
                            help="with --eval-only: evaluate the model after optimize_detector_for_inference")
        args = parser.parse_args(argv)
        if not args.config_file:
            parser.error("--config FILE is required (e.g. configs/toy/faster_rcnn_r18_c4_voc.yaml)")
        launch_from_args(args)

    return run_cli(run)
