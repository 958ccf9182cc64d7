"""Which backbone for my data and my machine: train one detector per backbone with the same base
config, data, schedule and overrides (each a normal ``tools/train_det.py`` run in
``OUTPUT/<label>/``), then read its evaluation, export it and time it, and write
``comparison.{md,csv,json,png}``. ``tools/compare_backbones.py`` is its command line.

Stages, one progress line per stage and run (elapsed time, estimate of what is left):

1. train    every run in turn; a finished run whose config matches is reused, an unfinished one
            resumed (``--resume``), a diverged one recorded as such; a folder holding a run of
            another config is refused before anything starts
2. export   OUTPUT/<label>/export/model.onnx (kept while newer than the weights), and its int8
            model.int8.onnx (NNCF, calibrated on training images) for the int8 rows
3. measure  parameters, GFLOPs, AP from eval_results.json, latency for PyTorch and each
            runtime/precision of ``runtime_choices`` (all runs timed one after the other, after
            the trainings, so that they see the same machine)

``--runs DIR ...`` builds the same table from existing train_det output folders (their
config.yaml, eval_results.json and model_final.pth; training time from the comparison's record
or detectron2's log.txt, peak memory only where the comparison recorded it).
"""
from __future__ import annotations

import argparse
import logging
import re
import statistics
import time
from pathlib import Path

from projects.compare import measure
from projects.compare.backbones import Spec, describe_run, parse_spec, run_overrides
from projects.compare.report import write_outputs
from projects.compare.runs import FINAL_WEIGHTS, read_record, run_state, train
from resnet_det.config import ConfigError, load_config
from resnet_det.engine.detection import OUTPUT_CONFIG, RESULTS_FILE
from resnet_det.utils.cli import add_debug_argument

__all__ = ["Progress", "compare_backbones", "compare_runs", "main", "measure_run"]

logger = logging.getLogger(__name__)
STAGES = ("train", "export", "measure")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class Progress:
    """One line per finished stage of a run: its time, the time since the start, and the time
    the remaining stages should take at the mean pace of the same stage so far."""

    def __init__(self, todo: dict):
        self.start, self.todo, self.took = time.perf_counter(), dict(todo), {s: [] for s in STAGES}

    def done(self, stage: str, label: str, seconds: float, note: str = "", measured: bool = True):
        """Print the line of ``stage`` of ``label``; ``measured`` False: nothing ran (reused)."""
        if measured:
            self.took[stage].append(seconds)
            self.todo[stage] -= 1
        pending = [s for s, n in self.todo.items() if n > 0]
        untimed = [s for s in pending if not self.took[s]]
        left = sum(self.todo[s] * statistics.mean(self.took[s]) for s in pending if s not in untimed)
        estimate = f"about {_minutes(left)} left" + (f" + {', '.join(untimed)} (not timed yet)" if untimed else "")
        elapsed = time.perf_counter() - self.start
        print(f"[{label}] {stage}: {note or 'done'} ({_minutes(seconds)}) | elapsed {_minutes(elapsed)}, {estimate}",
              flush=True)


def _train_info(folder) -> dict:
    """The training's wall time, CPU time and peak RSS: the comparison's record, else detectron2's
    'Total training time' lines of log.txt (the training loop's wall time only)."""
    record = read_record(folder)
    if "train_wall_s" in record:
        return {"wall_s": record["train_wall_s"], "cpu_s": record.get("train_cpu_s"),
                "peak_rss_bytes": record.get("peak_rss_bytes"), "source": "compare_run.json"}
    log = Path(folder) / "log.txt"
    spans = re.findall(r"Total training time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)", log.read_text()) if (
        log.is_file()) else []
    if not spans:
        return {"wall_s": None, "cpu_s": None, "peak_rss_bytes": None, "source": None}
    seconds = sum(int(d or 0) * 86400 + int(h) * 3600 + int(m) * 60 + int(s) for d, h, m, s in spans)
    return {"wall_s": seconds, "cpu_s": None, "peak_rss_bytes": None, "source": "log.txt (training loop only)"}


def measure_run(cfg, folder, threads: int, latency_images: int, warmup: int, progress: Progress, label: str,
                calibration_images: int = 0) -> dict:
    """Export, size, cost, accuracy and latency of the finished run in ``folder``."""
    weights = Path(folder) / FINAL_WEIGHTS
    start = time.perf_counter()
    onnx = measure.export(cfg, weights, folder, calibration_images)
    progress.done("export", label, time.perf_counter() - start, f"{onnx}")
    start = time.perf_counter()
    predictor = measure.load_predictor(cfg, weights)
    images = [predictor.read(f) for f in measure.test_images(cfg, latency_images)]
    figures = {"accuracy": measure.accuracy(cfg, folder), **measure.size_and_cost(predictor, images[0]),
               **measure.time_latency(predictor, onnx, images, threads, warmup), "export": str(onnx)}
    speeds = ", ".join(f"{k} {v:.0f} ms" for k, v in figures["latency_ms"].items() if v is not None)
    progress.done("measure", label, time.perf_counter() - start,
                  f"AP {figures['accuracy']['AP']:.1f}, {figures['gflops']:.1f} GFLOPs, {speeds}")
    return figures


def _record(label, description, folder, status, message=None) -> dict:
    return {"label": label, **description, "folder": str(folder), "status": status, "message": message,
            "train": _train_info(folder)}


def _result(runs, base_config, opts, threads, latency_images) -> dict:
    test = next((r["accuracy"]["dataset"] for r in runs if "accuracy" in r), None)
    return {"machine": measure.machine(threads), "base_config": base_config, "overrides": list(opts),
            "test_dataset": test, "latency_images": latency_images, "runs": runs}


def _specs(texts) -> list[Spec]:
    specs = [parse_spec(t) for t in texts]
    labels = [s.label for s in specs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"--backbones: runs {repeated} would share a folder; tell them apart with label=NAME")
    return specs


def _plan(base_config, specs, output, opts) -> list[tuple]:
    """``(spec, folder, overrides, cfg, state)`` of each run; every config is loaded and every
    folder checked (:func:`run_state`) before anything trains."""
    base_cfg = load_config(base_config, list(opts))
    plans = []
    for spec in specs:
        folder = Path(output) / spec.label
        run_opts = list(opts) + run_overrides(base_cfg, spec)
        cfg = load_config(base_config, run_opts + ["OUTPUT_DIR", str(folder)])
        plans.append((spec, folder, run_opts, cfg, run_state(cfg, folder)))
    return plans


def _train_all(base_config, plans, progress) -> dict:
    """Train the new and unfinished runs in turn; returns each label's final state."""
    states = {}
    for spec, folder, run_opts, _, state in plans:
        if state not in ("new", "unfinished"):
            progress.done("train", spec.label, 0, f"reused ({state})", measured=False)
        else:
            print(f"[{spec.label}] train: {'resuming' if state == 'unfinished' else 'starting'} "
                  f"(log: {folder / 'log.txt'})", flush=True)
            record = train(base_config, run_opts, folder, resume=state == "unfinished")
            state = record["status"]
            if state == "diverged":  # nothing to export or measure
                progress.todo["export"] -= 1
                progress.todo["measure"] -= 1
            progress.done("train", spec.label, record["segments"][-1]["wall_s"], state)
        states[spec.label] = state
    return states


def compare_backbones(base_config, backbones, output, opts=(), *, threads=2, latency_images=10, warmup=2,
                      calibration_images=0) -> dict:
    """Train (or reuse) one run per backbone spec in ``output/<label>``, measure each, write the
    comparison files into ``output``; returns the comparison (as comparison.json holds it)."""
    plans = _plan(base_config, _specs(backbones), output, opts)
    trains = sum(state in ("new", "unfinished") for *_, state in plans)
    finished = sum(state != "diverged" for *_, state in plans)
    progress = Progress({"train": trains, "export": finished, "measure": finished})
    print(f"{len(plans)} run(s) in {output}: {trains} to train, {len(plans) - trains} reused", flush=True)
    states = _train_all(base_config, plans, progress)
    # Measured after all trainings, one after the other: the latencies see the same machine.
    runs = []
    for spec, folder, _, cfg, _ in plans:
        description = {"name": spec.name, "design": spec.design, "depth": spec.depth, "init": spec.kind,
                       "weights": cfg.MODEL.WEIGHTS, "seed": cfg.SEED}
        run = _record(spec.label, description, folder, states[spec.label], read_record(folder).get("message"))
        if run["status"] == "finished":
            run.update(measure_run(cfg, folder, threads, latency_images, warmup, progress, spec.label,
                                   calibration_images))
        runs.append(run)
    return _write(_result(runs, str(base_config), opts, threads, latency_images), output)


def _write(result, output) -> dict:
    paths = write_outputs(result, output)
    print(f"wrote {', '.join(str(p) for p in paths.values())}", flush=True)
    return result


def compare_runs(folders, output, *, threads=2, latency_images=10, warmup=2, calibration_images=0) -> dict:
    """The comparison's table of existing train_det output ``folders`` (no training), written
    into ``output``; returns the comparison."""
    folders = [Path(f) for f in folders]
    names = [f.name for f in folders]
    if len(set(names)) != len(names):
        raise ConfigError(f"--runs: folders with the same name {names}: each run's label is its folder's name")
    loaded = []
    for folder in folders:
        if not (folder / OUTPUT_CONFIG).is_file():
            raise ConfigError(f"{folder}: no {OUTPUT_CONFIG}; --runs takes tools/train_det.py output folders")
        cfg = load_config(str(folder / OUTPUT_CONFIG))
        diverged = read_record(folder).get("status") == "diverged"
        if not diverged and not ((folder / RESULTS_FILE).is_file() and (folder / FINAL_WEIGHTS).is_file()):
            raise ConfigError(f"{folder}: no {RESULTS_FILE} and {FINAL_WEIGHTS}; the run did not finish "
                              "(train it on with tools/train_det.py --resume)")
        loaded.append((folder, cfg, "diverged" if diverged else "finished"))
    n = sum(state == "finished" for *_, state in loaded)
    progress = Progress({"train": 0, "export": n, "measure": n})
    runs = []
    for folder, cfg, state in loaded:
        run = _record(folder.name, describe_run(cfg), folder, state, read_record(folder).get("message"))
        if state == "finished":
            run.update(measure_run(cfg, folder, threads, latency_images, warmup, progress, folder.name,
                                   calibration_images))
        runs.append(run)
    return _write(_result(runs, None, [], threads, latency_images), output)


def main(argv=None, doc=None):
    """The command line of tools/compare_backbones.py (run through ``run_cli``)."""
    p = argparse.ArgumentParser(prog="compare_backbones.py", description=doc or __doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", help="the base detector yaml shared by every run")
    p.add_argument("--backbones", nargs="+", metavar="SPEC",
                   help="NAME[:weights=PATH][:seed=S][:label=L]; NAME: vgg16, r18..r152 (C4), r18-fpn..r152-fpn")
    p.add_argument("--runs", nargs="+", metavar="DIR", help="existing train_det output folders instead of training")
    p.add_argument("--output", required=True, help="folder of the runs (one per label) and the comparison files")
    p.add_argument("--threads", type=int, default=2, help="threads for the latency figures (default 2)")
    p.add_argument("--latency-images", type=int, default=10, help="test images timed per runtime (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    p.add_argument("--int8-calibration", type=int, default=64, metavar="N",
                   help="quantize each export to int8 on N training images for the int8 rows (default 64; 0: none)")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides shared by every run: KEY VALUE ...")
    args = p.parse_args(argv)
    if bool(args.runs) == bool(args.backbones):
        p.error("give either --config FILE --backbones SPEC ... or --runs DIR ...")
    if args.runs and (args.config or args.opts):
        p.error("--runs reads each folder's config.yaml: no --config or KEY VALUE overrides")
    if args.backbones and not args.config:
        p.error("--backbones needs --config FILE (the base config)")
    if args.threads < 1 or args.latency_images < 1 or args.warmup < 0 or args.int8_calibration < 0:
        p.error("--threads and --latency-images must be >= 1, --warmup and --int8-calibration >= 0")
    common = dict(threads=args.threads, latency_images=args.latency_images, warmup=args.warmup,
                  calibration_images=args.int8_calibration)
    if args.runs:
        compare_runs(args.runs, args.output, **common)
    else:
        compare_backbones(args.config, args.backbones, args.output, args.opts, **common)
    return 0
