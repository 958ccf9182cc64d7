"""One exported detector on every runtime x precision: accuracy, agreement and speed side by side.

    python benchmarks/bench_precision.py --onnx output/onnx_r18_c4 --config CFG \
        [--images 20] [--repeats 3] [--threads 2] [--bf16-emulation] [--out FILE] [KEY VALUE ...]

For each pair :func:`resnet_det.deploy.runtime_choices` offers for the export (int8 where
``tools/export_model.py --int8`` wrote ``model.int8.onnx``) on the config's ``DATASETS.TEST``:

- AP, AP50, AP75 through the evaluator of ``train_det.py --eval-only`` (``OnnxModel``);
- the one-to-one match rate of its detections with ONNX Runtime fp32's on the same images
  (same class, IoU >= 0.9; over all detections, and over those scoring >= 0.5 in either);
- the median seconds per image over the first ``--images`` test images at the export's own
  test size, every contender alternated in one process (``common.time_alternating``).

``--bf16-emulation`` adds OpenVINO's bf16 inference as it would round, for a CPU without bf16
units (``bf16_emulation.py``): accuracy and agreement only, never timed.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, time_alternating, write_result  # noqa: E402

REFERENCE = "onnxruntime fp32"


class Recording:
    """A detector that keeps every output, for the agreement with the reference afterwards."""

    def __init__(self, detector):
        self.detector, self.outputs = detector, []

    def __call__(self, image):
        self.outputs.append(self.detector(image))
        return self.outputs[-1]


def agreement(ref: list, other: list, iou: float = 0.9, score: float = 0.0) -> dict:
    """Detections of ``other`` paired one to one with ``ref``'s, image by image, among those
    scoring >= ``score``: ``{"ref", "other", "matched", "rate"}`` (rate over the larger count)."""
    from resnet_det.deploy.compare import match_detections

    counts = np.zeros(3, dtype=int)
    for a, b in zip(ref, other):
        a, b = ({k: np.asarray(d[k])[d["scores"] >= score] for k in ("boxes", "scores", "classes")} for d in (a, b))
        m = match_detections(a, b, iou)
        counts += (*m["count"], m["matched"])
    return {"ref": int(counts[0]), "other": int(counts[1]), "matched": int(counts[2]),
            "rate": float(counts[2] / max(counts[0], counts[1], 1))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="the export folder (model.onnx, model.json[, model.int8.onnx])")
    p.add_argument("--config", required=True, help="the config whose DATASETS.TEST to measure on")
    p.add_argument("--images", type=int, default=20, help="test images timed per contender (default 20)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16-emulation", action="store_true",
                   help="also OpenVINO's bf16 rounding emulated in fp32 (accuracy only)")
    p.add_argument("--out", default="precision", help="result name under benchmarks/results/ (default precision)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = p.parse_args()

    from detectron2.data import DatasetCatalog
    from detectron2.evaluation import inference_on_dataset

    from resnet_det.config import load_config
    from resnet_det.data.datasets import check_datasets, register_all_datasets
    from resnet_det.deploy import OnnxDetector, runtime_choices
    from resnet_det.evaluation.evaluators import build_evaluator
    from resnet_det.export.onnx_evaluation import OnnxModel

    cfg = load_config(args.config, args.opts)
    register_all_datasets(cfg)
    check_datasets(list(cfg.DATASETS.TEST))
    detectors = {f"{r} {p}": OnnxDetector(args.onnx, runtime=r, precision=p, threads=args.threads)
                 for r, p in runtime_choices(args.onnx)}
    if args.bf16_emulation:
        from bf16_emulation import emulate_bf16

        emulated = Path(tempfile.mkdtemp()) / "model.onnx"
        emulate_bf16(Path(args.onnx), emulated)
        detectors["bf16 emulated (onnxruntime)"] = OnnxDetector(emulated, threads=args.threads)
    results = {}
    for name in cfg.DATASETS.TEST:
        dataset = DatasetCatalog.get(name)
        metrics, outputs = {}, {}
        for key, detector in detectors.items():
            recorder = Recording(detector)
            found = inference_on_dataset(OnnxModel(recorder), [[d] for d in dataset], build_evaluator(cfg, name))
            metrics[key], outputs[key] = found["bbox"], recorder.outputs
            print(f"{name} {key}: AP {metrics[key]['AP']:.2f}", flush=True)
        images = [detectors[REFERENCE].read(d["file_name"]) for d in dataset[: args.images]]
        timed = {k: (lambda d=d: [d(im) for im in images]) for k, d in detectors.items() if "emulated" not in k}
        seconds = time_alternating(timed, repeats=args.repeats, warmup=1)
        sizes = sorted({detectors[REFERENCE].resize(im).shape[:2] for im in images})
        rows = []
        for key in detectors:
            all_, confident = agreement(outputs[REFERENCE], outputs[key]), agreement(
                outputs[REFERENCE], outputs[key], score=0.5)
            s = seconds.get(key)
            rows.append({"runtime precision": key, **{m: round(metrics[key][m], 2) for m in ("AP", "AP50", "AP75")},
                         "match IoU>=0.9": f"{all_['rate']:.3f} ({all_['matched']}/{all_['ref']}, {all_['other']})",
                         "match, score>=0.5": f"{confident['rate']:.3f} ({confident['matched']}/{confident['ref']}, "
                                              f"{confident['other']})",
                         "ms/image": "-" if s is None else round(1000 * s / len(images), 1),
                         "vs onnxruntime fp32": "-" if s is None else round(s / seconds[REFERENCE], 3)})
        print(f"\n{name}: {len(dataset)} images; timing on {len(images)} of them at the graph sizes "
              f"{sizes[0]}..{sizes[-1]}, {args.threads} threads, median of {args.repeats} alternated runs")
        print_table(rows, list(rows[0]))
        results[name] = {"rows": rows, "metrics": metrics, "seconds": seconds, "sizes": sizes}
    print(f"wrote {write_result(args.out, {'args': vars(args), 'results': json.loads(json.dumps(results))})}")


if __name__ == "__main__":
    main()
