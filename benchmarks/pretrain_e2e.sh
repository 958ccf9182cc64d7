#!/usr/bin/env bash
# End-to-end pretraining throughput: the real engine and loader (tools/pretrain_cls.py) on a
# generated ImageNet-layout JPEG folder, R50/R101 x paper/modern recipes, bf16 + channels_last.
# Prints the median images_per_sec of metrics.json (first log period dropped). Meant for a GPU.
#   bash benchmarks/pretrain_e2e.sh [WORKDIR] [NUM_WORKERS]
set -euo pipefail
PY=${PYTHON:-python3}
WORK=${1:-/tmp/pretrain_e2e}
WORKERS=${2:-15}
if [ ! -d "$WORK/toy/imagenet" ]; then
  "$PY" tools/make_toy_data.py --out "$WORK/toy" --kinds classification --num-train-per-class 240 \
    --num-val-per-class 10 --cls-size 320 > /dev/null
fi
for depth in 50 101; do for recipe in paper modern; do
  out=$WORK/r${depth}_${recipe}
  "$PY" tools/pretrain_cls.py --config-file configs/pretrain/resnet101_imagenet.yaml \
    DATA.ROOT "$WORK/toy/imagenet" MODEL.DEPTH $depth DATA.RECIPE $recipe DATA.NUM_WORKERS "$WORKERS" \
    SOLVER.IMS_PER_BATCH 256 SOLVER.AMP.ENABLED True SOLVER.AMP.PRECISION bf16 SOLVER.CHANNELS_LAST True SOLVER.EPOCHS 40 \
    SOLVER.WARMUP_EPOCHS 1 TEST.TEN_CROP False TEST.EVAL_PERIOD 100000 SOLVER.CHECKPOINT_PERIOD 100000 \
    SOLVER.LOG_PERIOD 20 OUTPUT_DIR "$out" > "$out.log" 2>&1 || { tail -30 "$out.log"; exit 1; }
  "$PY" - "$out" $depth $recipe <<'PY'
import json, statistics, sys
recs = [json.loads(line) for line in open(sys.argv[1] + "/metrics.json")]
ips = [r["images_per_sec"] for r in recs if "images_per_sec" in r][1:]
print(f"R{sys.argv[2]} {sys.argv[3]}: median {statistics.median(ips):.0f} img/s over {len(ips)} "
      f"log periods (first dropped); all: {[round(x) for x in ips]}")
PY
done; done
