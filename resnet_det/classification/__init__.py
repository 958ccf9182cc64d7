"""Classification pretraining (ImageNet-layout data, the paper's and a modern recipe) as a detectron2
trainer with exact resume, 1-crop/10-crop evaluation and the backbone export for detection::

    from resnet_det.classification import load_pretrain_cfg, train
    cfg = load_pretrain_cfg("configs/pretrain/toy_resnet18.yaml", ["DATA.ROOT", "toy/imagenet"])
    metrics = train(cfg)            # or train(cfg, resume=True)
"""
from .config import get_pretrain_cfg, load_pretrain_cfg, validate_pretrain_cfg
from .data import (ClassTreeError, DataLoaderWorkerError, ImageFolderDataset, TrainSampler, UnreadableImageError,
                   build_test_loader, build_train_loader, check_class_tree, decode_image, iterate_loader, load_image)
from .engine import (ClassificationTrainer, DivergenceError, build_classifier, build_datasets, classification_loss,
                     evaluate_only, launch_from_args, plot_curves, schedule_lengths, train)
from .evaluation import ClassificationEvaluator, evaluate
from .solver import build_lr_scheduler, build_optimizer
from .transforms import MEAN, STD, MixCollate, NormalizeBatch, build_eval_transform, build_train_transform

__all__ = [
    "get_pretrain_cfg", "load_pretrain_cfg", "validate_pretrain_cfg",
    "ClassTreeError", "DataLoaderWorkerError", "ImageFolderDataset", "TrainSampler", "UnreadableImageError",
    "build_test_loader", "build_train_loader", "check_class_tree", "decode_image", "iterate_loader",
    "load_image",
    "ClassificationTrainer", "DivergenceError", "build_classifier", "build_datasets", "classification_loss",
    "evaluate_only", "launch_from_args", "plot_curves", "schedule_lengths", "train",
    "ClassificationEvaluator", "evaluate",
    "build_lr_scheduler", "build_optimizer",
    "MEAN", "STD", "MixCollate", "NormalizeBatch", "build_eval_transform", "build_train_transform",
]
