"""resnet_det: ResNet and VGG-16 from classification pretraining to Faster R-CNN on detectron2.

Importing the package registers its backbones and RoI heads with detectron2 (idempotently).
On a machine that only serves exported models (numpy, Pillow, onnxruntime; no torch, no
detectron2) the import succeeds without registering anything, and ``resnet_det.deploy`` runs.
"""
import warnings

__version__ = "0.1.0"

# Top-level packages of the training stack (the ``[train]`` extra); their absence means a
# serving install, anything else missing is a real error and is raised.
_TRAINING_STACK = ("torch", "torchvision", "detectron2", "fvcore", "iopath", "pycocotools")

try:
    with warnings.catch_warnings():
        # fvcore and detectron2.modeling script functions at import time; torch 2.14
        # deprecates torch.jit.script, which is not ours to act on.
        warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
        import detectron2.layers  # noqa: F401
        import detectron2.modeling  # noqa: F401
except ImportError as e:
    if (e.name or "").split(".")[0] not in _TRAINING_STACK:
        raise
    HAS_DETECTRON2 = False
else:
    HAS_DETECTRON2 = True
    from resnet_det import modeling  # noqa: F401  (registers the backbones and RoI heads)
    from resnet_det.evaluation.coco import use_in_detectron2

    # detectron2's COCOEvaluator on faster-coco-eval where its own compiled evaluator is not built.
    use_in_detectron2()
