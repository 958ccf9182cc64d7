"""resnet_det: ResNet (He et al., CVPR 2016) from ImageNet pretraining to Faster R-CNN."""
from setuptools import find_packages, setup

# What a machine that only serves exported models needs (resnet_det.deploy).
SERVE = ["numpy", "pillow", "onnxruntime>=1.18"]
# Pretraining, detection training and evaluation, ONNX export.
TRAIN = [
    "torch>=2.1",
    "torchvision>=0.16",
    "fvcore",
    "iopath",
    "pycocotools",
    "faster-coco-eval>=1.6",  # the COCO evaluation engine (pycocotools is its fallback)
    "safetensors",
    "tqdm",
    "tensorboard",
    "matplotlib",
    "pyyaml",
    "onnx>=1.16",
    "nncf>=2.14",  # tools/export_model.py --int8 (post-training quantization)
]
# tools/serve.py (resnet_det.serve): HTTP on top of the runner, still without torch.
SERVE_HTTP = ["starlette>=0.40", "uvicorn>=0.30", "python-multipart>=0.0.18", "prometheus-client>=0.20"]
# The runner on OpenVINO (fp32, bf16 where the CPU has it, int8), still without torch.
OPENVINO = ["openvino>=2024.4"]

setup(
    name="resnet_det",
    version="0.1.0",
    description="ResNet/VGG-16 backbones, classification pretraining and Faster R-CNN on detectron2",
    packages=find_packages(include=["resnet_det", "resnet_det.*"]),
    python_requires=">=3.10",
    # A serving install: pip install resnet_det; training: pip install "resnet_det[train]".
    # detectron2 is deliberately not listed: it has no official PyPI release, and a user's
    # own source build must not be replaced. tools/setup_env.sh installs it when missing.
    install_requires=SERVE,
    extras_require={"train": TRAIN, "serve": SERVE_HTTP, "openvino": OPENVINO,
                    "dev": ["pytest>=7", "pytest-timeout", "httpx", "ruff>=0.6", "import-linter>=2.1"]},
    package_data={"resnet_det.serve": ["static/*.html"]},  # the page of GET /
    entry_points={"console_scripts": [
        # The serving install's commands (numpy, Pillow, onnxruntime; the [serve] extra for HTTP).
        "resnet-det-detect = resnet_det.deploy.detect:main",
        "resnet-det-serve = resnet_det.serve.app:main",
        # The training stack's (the [train] extra and detectron2).
        "resnet-det-pretrain = resnet_det.engine.classification:command_line",
        "resnet-det-train = resnet_det.engine.detection:command_line",
        "resnet-det-export = resnet_det.export.exporter:command_line",
    ]},
)
