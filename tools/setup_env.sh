#!/usr/bin/env bash
# Set up (or refresh) the development environment: a virtual environment in .venv with
# torch, torchvision, detectron2 and this package in editable mode. Safe to re-run.
#
#   bash tools/setup_env.sh            # the active virtualenv, else ./.venv (created if missing)
#   VENV=/path/to/env bash tools/setup_env.sh
#   VENV=none bash tools/setup_env.sh  # install into the python already on PATH
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-${VIRTUAL_ENV:-.venv}}
if [ "$VENV" != "none" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  PYTHON="$VENV/bin/python"
fi
PIP=("$PYTHON" -m pip --disable-pip-version-check)
# Some machines configure pip with local index folders that may not exist; pip warns once per
# package about those. Drop only that line so real errors stay visible (pipefail keeps status).
pip_quiet() { "${PIP[@]}" "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

pip_quiet install -q --upgrade "pip>=23" wheel
echo "[setup] torch + torchvision"
pip_quiet install -q "torch==2.14.1" "torchvision==0.29.1"

echo "[setup] detectron2 dependencies"
pip_quiet install -q "setuptools<81" fvcore iopath pycocotools omegaconf hydra-core yacs \
  termcolor tabulate cloudpickle tensorboard matplotlib safetensors tqdm "numpy>=1.24" pillow \
  opencv-python-headless

# Deploy (ONNX export, ONNX Runtime runner) and the C++ COCO evaluator behind COCOEvaluator.
echo "[setup] onnx, onnxruntime, faster-coco-eval"
pip_quiet install -q "onnx>=1.16" "onnxruntime>=1.18" "faster-coco-eval>=1.6"

# detectron2 has no official PyPI release. Keep a detectron2 the user already has (for
# example built from source); otherwise install the sal-detectron2 redistribution's
# pure-Python part (its compiled _C is not needed for Faster R-CNN).
if "$PYTHON" -c "import detectron2" 2>/dev/null; then
  echo "[setup] detectron2 already installed: $("$PYTHON" -c 'import detectron2; print(detectron2.__file__)') (left untouched)"
else
  echo "[setup] detectron2 (sal-detectron2 wheel, python code only)"
  SITE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  TMP=$(mktemp -d)
  pip_quiet install -q --no-deps --python-version 3.10 --only-binary=:all: \
    --target "$TMP" "sal-detectron2==0.7.2"
  # Only the package and its metadata: the wheel also carries a top-level `tools` folder.
  for d in "$TMP"/detectron2 "$TMP"/sal_detectron2-*.dist-info; do
    rm -rf "${SITE:?}/$(basename "$d")"
    cp -r "$d" "$SITE/"
  done
  rm -rf "$TMP"
  "$PYTHON" -c "import detectron2; print('[setup] detectron2', detectron2.__version__)"
fi

echo "[setup] resnet_det (editable) + training stack + serving and OpenVINO extras + dev tools"
pip_quiet install -q --no-build-isolation -e ".[train,serve,openvino,dev]"

# The browser test of tools/serve.py's page (tests/test_serve_browser.py) drives the system's
# Chromium with Playwright; a browser that playwright downloads itself does not run here.
pip_quiet install -q playwright
if command -v chromium >/dev/null 2>&1; then
  echo "[setup] chromium: $(command -v chromium)"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] chromium (apt-get)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 ||
         { apt-get update -qq >/dev/null 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; }; then
    echo "[setup] chromium could not be installed: tests/test_serve_browser.py will be skipped"
  fi
else
  echo "[setup] no chromium and no apt-get as root: tests/test_serve_browser.py will be skipped"
fi
"$PYTHON" -c "import resnet_det; print('[setup] resnet_det', resnet_det.__version__, 'ready')"
