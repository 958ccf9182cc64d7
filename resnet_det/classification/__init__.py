"""Classification pretraining (ImageNet-layout data, the paper's and a modern recipe) as a detectron2
trainer with exact resume, 1-crop/10-crop evaluation and the backbone export for detection::

    from resnet_det.classification import load_pretrain_cfg, train
    cfg = load_pretrain_cfg("configs/pretrain/toy_resnet18.yaml", ["DATA.ROOT", "toy/imagenet"])
    metrics = train(cfg)            # or train(cfg, resume=True)
"""
from .config import get_pretrain_cfg, load_pretrain_cfg
from .data import (ClassTreeError, DataLoaderWorkerError, ImageFolderDataset, TrainSampler, UnreadableImageError,
                   build_train_loader, check_class_tree, iterate_loader, load_image)
from .engine import (ClassificationTrainer, DivergenceError, build_datasets, evaluate_only, launch_from_args, plot_curves,
                     train)
from .evaluation import evaluate
from .solver import build_lr_scheduler

__all__ = [
    "get_pretrain_cfg", "load_pretrain_cfg",
    "ClassTreeError", "DataLoaderWorkerError", "ImageFolderDataset", "TrainSampler", "UnreadableImageError",
    "build_train_loader", "check_class_tree", "iterate_loader", "load_image",
    "ClassificationTrainer", "DivergenceError", "build_datasets", "evaluate_only", "launch_from_args", "plot_curves",
    "train", "evaluate", "build_lr_scheduler",
]
