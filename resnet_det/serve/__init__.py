"""Serve an exported detector over HTTP (``tools/serve.py``, docs/deploy.md): Starlette on uvicorn,
torch-free. Needs the serving extra: ``pip install "resnet_det[serve]"``."""
from resnet_det.serve.app import Refused, create_app, load_detector, serve

__all__ = ["Refused", "create_app", "load_detector", "serve"]
