#!/usr/bin/env python
"""Serve an exported detector over HTTP, with a page to try it (docs/deploy.md).

    python tools/serve.py --onnx output/onnx_r18_c4/model.onnx [--host 127.0.0.1] [--port 8000] \
        [--workers N] [--max-concurrency K] [--max-queue Q] [--max-body-mb M] [--body-timeout S]

Then open http://127.0.0.1:8000/ or POST an image to /v1/detect. Needs the serving extra
(pip install ".[serve]"); no torch.
"""
import sys

try:
    from resnet_det.serve.app import main
except ModuleNotFoundError as e:  # starlette, uvicorn, ... are the serving extra's
    sys.exit(f"error: {e.name} is not installed: pip install \".[serve]\" (the serving extra)")

if __name__ == "__main__":
    sys.exit(main())
