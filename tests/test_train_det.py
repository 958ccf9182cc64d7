"""tools/train_det.py end to end on toy data: training, evaluation, outputs, exact resume
after SIGKILL, divergence, distributed CPU training and config errors."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from projects.toy_data import dataset_opts, make_toy_data
from resnet_det.config import ConfigError, load_config
from resnet_det.engine.detection import check_can_train

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "train_det.py"
TOY_VOC = ROOT / "configs" / "toy" / "faster_rcnn_r18_c4_voc.yaml"
TOY_COCO = ROOT / "configs" / "toy" / "faster_rcnn_r18_fpn_coco.yaml"
# The toy configs at the size of the small test data (96x128 images) and a short schedule.
SMALL = [
    "MODEL.DEVICE",
    "cpu",
    "INPUT.MIN_SIZE_TRAIN",
    "(96,)",
    "INPUT.MAX_SIZE_TRAIN",
    "128",
    "INPUT.MIN_SIZE_TEST",
    "96",
    "INPUT.MAX_SIZE_TEST",
    "128",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.WARMUP_ITERS",
    "5",
    "SOLVER.STEPS",
    "()",
    "DATALOADER.NUM_WORKERS",
    "0",
]


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_data(
        root, seed=0, kinds=["voc", "coco"], num_det_train=16, num_det_val=8, det_size=(96, 128)
    )
    # TOY_ROOT is this file's own: _run registers the toy datasets there by config overrides.
    return dict(os.environ, TOY_ROOT=str(root), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _run(env, config, out, *opts, args=(), timeout=900, check=True):
    cmd = [
        sys.executable,
        str(TOOL),
        "--config",
        str(config),
        *args,
        *SMALL,
        "OUTPUT_DIR",
        str(out),
        *dataset_opts(env["TOY_ROOT"]),
        *opts,
    ]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_bad_config_fails_before_any_work(toy_env, tmp_path):
    out = tmp_path / "out"
    proc = _run(
        toy_env, TOY_VOC, out, "MODEL.RESNETS.DEPTH", "77", "SOLVER.BASE_LR", "-0.5", check=False
    )
    assert proc.returncode != 0
    assert "MODEL.RESNETS.DEPTH = 77; allowed: 18, 34, 50, 101, 152" in proc.stderr
    assert "SOLVER.BASE_LR = -0.5; allowed: a number > 0" in proc.stderr
    assert not out.exists()  # nothing started: no output folder, no process spawned


def test_missing_dataset_is_reported_before_training(toy_env, tmp_path):
    env = dict(toy_env, TOY_ROOT=str(tmp_path / "nowhere"))
    proc = _run(env, TOY_VOC, tmp_path / "out", check=False)
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr and "DATASETS.VOC_REGISTER" in proc.stderr
    assert "Starting training" not in proc.stderr


def test_frozen_bn_from_scratch_is_refused():
    cfg = load_config(str(ROOT / "configs" / "faster_rcnn_r101_coco.yaml"))
    with pytest.raises(
        ConfigError, match="MODEL.WEIGHTS is empty and MODEL.RESNETS.NORM is FrozenBN"
    ):
        check_can_train(cfg, resume=False)
    cfg = load_config(str(TOY_VOC))  # GN: trains from scratch
    check_can_train(cfg, resume=False)


def _total_losses(out):
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    return [r["total_loss"] for r in rows if "total_loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("config", [TOY_VOC, TOY_COCO], ids=["voc", "coco"])
def test_short_training_learns_evaluates_and_writes_outputs(toy_env, tmp_path, config):
    out = tmp_path / "out"
    _run(toy_env, config, out, "SOLVER.MAX_ITER", "60", "SOLVER.CHECKPOINT_PERIOD", "30")
    names = set(os.listdir(out))
    assert {
        "config.yaml",
        "log.txt",
        "metrics.json",
        "last_checkpoint",
        "model_0000029.pth",
        "model_final.pth",
        "eval_results.json",
        "curves.png",
    } <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    # Both evaluators leave their detections for tools/analyze_results.py.
    (dataset_dir,) = (out / "inference").iterdir()
    assert json.loads((dataset_dir / "coco_instances_results.json").read_text())
    losses = _total_losses(out)
    assert len(losses) >= 3 and losses[-1] < losses[0]
    results = json.loads((out / "eval_results.json").read_text())
    ((dataset, tasks),) = results.items()
    assert dataset.startswith("toy_")
    bbox = tasks["bbox"]
    assert 0 <= bbox["AP50"] <= 100 and 0 <= bbox["AP"] <= bbox["AP50"]
    if config == TOY_VOC:
        assert {"AP50_VOC07", "AP50_allpoints", "AP50-circle"} <= bbox.keys()
        assert bbox["AP50"] == bbox["AP50_VOC07"]  # VOC2007 test: the 11-point metric
    else:
        assert {"AP75", "APs", "APm", "APl", "AP-circle"} <= bbox.keys()

    # --eval-only on the final weights reproduces the final evaluation
    again = tmp_path / "again"
    _run(
        toy_env, config, again, "MODEL.WEIGHTS", str(out / "model_final.pth"), args=["--eval-only"]
    )
    assert json.loads((again / "eval_results.json").read_text()) == results

    # ... and after the inference deploy step, the same up to float rounding
    deployed = tmp_path / "deployed"
    _run(toy_env, config, deployed, "MODEL.WEIGHTS", str(out / "model_final.pth"),
         args=["--eval-only", "--deploy"])
    assert "Deploy step applied" in (deployed / "log.txt").read_text()
    fast = json.loads((deployed / "eval_results.json").read_text())[dataset]["bbox"]
    assert abs(fast["AP50"] - bbox["AP50"]) <= 1.0 and abs(fast["AP"] - bbox["AP"]) <= 1.0


# Kills itself (SIGKILL) in the middle of writing its second checkpoint.
KILL_DURING_SAVE = Path(__file__).with_name("kill_during_save.py")  # kills in the 2nd save

RESUME = [
    "SOLVER.MAX_ITER",
    "12",
    "SOLVER.CHECKPOINT_PERIOD",
    "3",
    "DATASETS.TEST",
    "()",
    "SEED",
    "7",
    "SOLVER.LOG_PERIOD",
    "1",
]


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_weights(toy_env, tmp_path):
    """SIGKILL during a checkpoint save, and again right after last_checkpoint was updated;
    each time --resume continues, and the final weights equal an uninterrupted run's
    bit for bit (CPU, fixed seed; NUM_WORKERS 0 for speed: the batches do not depend on it)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run(toy_env, TOY_VOC, straight, *RESUME)

    opts = [*SMALL, "OUTPUT_DIR", str(killed), *dataset_opts(toy_env["TOY_ROOT"]), *RESUME]
    cmd = [str(TOOL), "--config", str(TOY_VOC), *opts]
    proc = subprocess.run(
        [sys.executable, str(KILL_DURING_SAVE), "2", *cmd],
        env=toy_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == -signal.SIGKILL
    # The partial file is a temporary one; last_checkpoint names the complete first checkpoint.
    assert (killed / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not (killed / "model_0000005.pth").exists()
    assert any(n.endswith(".tmp") for n in os.listdir(killed))
    assert _weights(killed / "model_0000002.pth")

    # Resume, and kill again as soon as the checkpoint of iteration 8 is tagged.
    resumed = subprocess.Popen(
        [sys.executable, str(TOOL), "--config", str(TOY_VOC), "--resume", *opts],
        env=toy_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 900
    while time.time() < deadline and resumed.poll() is None:
        tag = killed / "last_checkpoint"
        if tag.exists() and tag.read_text() == "model_0000008.pth":
            resumed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert resumed.wait(timeout=60) == -signal.SIGKILL

    _run(toy_env, TOY_VOC, killed, *RESUME, args=["--resume"])
    log = (killed / "log.txt").read_text()
    assert (
        "Starting training from iteration 3" in log and "Starting training from iteration 9" in log
    )
    final, reference = _weights(killed / "model_final.pth"), _weights(straight / "model_final.pth")
    assert final.keys() == reference.keys()
    different = [k for k in reference if not torch.equal(final[k], reference[k])]
    assert not different, different[:5]
    assert not any(n.endswith(".tmp") for n in os.listdir(killed))  # the interrupted save's temp file went
    # The lines logged between a checkpoint and a kill were logged again: they are there once.
    lines = (killed / "metrics.json").read_text().splitlines()
    iterations = [json.loads(x)["iteration"] for x in lines if "total_loss" in x]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 11, iterations


@pytest.mark.slow
def test_divergence_stops_with_the_losses_and_keeps_the_last_good_checkpoint(toy_env, tmp_path):
    out = tmp_path / "out"
    # A sane first iteration (warm-up starts at 1e-4), then a learning rate that explodes.
    proc = _run(
        toy_env,
        TOY_VOC,
        out,
        "SOLVER.BASE_LR",
        "5000.0",
        "SOLVER.WARMUP_FACTOR",
        "0.00000002",
        "SOLVER.WARMUP_ITERS",
        "2",
        "SOLVER.MAX_ITER",
        "20",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
        "DATASETS.TEST",
        "()",
        check=False,
    )
    # An expected error (TrainingDivergedError): the message alone, exit status 2.
    assert proc.returncode == 2
    err = proc.stderr
    assert "error: " in err and "Traceback" not in err
    # detectron2 stops on a NaN/inf loss, or earlier on NaN/inf boxes inside the model;
    # either way the message gives the iteration and the loss terms.
    diverged = int(
        re.search(r"Training diverged at iteration (\d+); loss terms last recorded: ", err)[1]
    )
    for term in ("loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"):
        assert term in err
    assert "last good checkpoint" in err
    last = torch.load(out / (out / "last_checkpoint").read_text(), weights_only=True)
    assert last["iteration"] < diverged
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert not (out / "model_final.pth").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_train_and_evaluate(toy_env, tmp_path):
    out = tmp_path / "out"
    _run(
        toy_env,
        TOY_COCO,
        out,
        "SOLVER.MAX_ITER",
        "4",
        "SOLVER.CHECKPOINT_PERIOD",
        "100",
        args=["--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{_free_port()}"],
    )
    log = (out / "log.txt").read_text()
    assert "World size: 2" in log
    assert "1 per process" in log  # our loader: IMS_PER_BATCH 2 split over 2 processes
    results = json.loads((out / "eval_results.json").read_text())
    assert "bbox" in results["toy_coco_val"]
    assert (out / "model_final.pth").exists()


# Upstream warnings a user cannot act on (resnet_det.utils.cli filters them at their source).
UPSTREAM = ("torch.jit.script` is deprecated", "torch.meshgrid", "is_fx_tracing", "broadcast_buffers",
            "worker processes in total")


@pytest.mark.slow
def test_logs_hold_progress_not_dumps_colour_codes_or_upstream_warnings(toy_env, tmp_path):
    from resnet_det.engine.launch import available_cpus

    out, workers = tmp_path / "out", available_cpus() + 2
    proc = _run(toy_env, TOY_VOC, out, "SOLVER.MAX_ITER", "3", "DATALOADER.NUM_WORKERS", str(workers))
    log = (out / "log.txt").read_text()
    assert "\x1b[" not in log and "\x1b[" not in (out / "config.yaml").read_text()
    assert "Running with full config" not in log and "Contents of args.config_file" not in log
    assert "Full config written to OUTPUT_DIR/config.yaml" in log
    assert f"DATALOADER.NUM_WORKERS {workers} is more than the {available_cpus()} CPU(s)" in log
    # No config dump (config.yaml holds it); detectron2's model summary stays, as in its own logs.
    config_keys = [line for line in (out / "config.yaml").read_text().splitlines() if line.endswith(":")]
    assert not [line for line in log.splitlines() if line in config_keys], "the log holds a config dump"
    for warning in UPSTREAM:
        assert warning not in proc.stderr and warning not in log, warning
    # The PyTorch demo (detectron2's DefaultPredictor) on the trained weights: no warnings either.
    demo = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--config", str(TOY_VOC),
                           "--weights", str(out / "model_final.pth"), "--input", str(Path(toy_env["TOY_ROOT"]) /
                           "VOC2007" / "JPEGImages"), "--output", str(tmp_path / "drawn"), *SMALL,
                           *dataset_opts(toy_env["TOY_ROOT"])], env=toy_env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    for warning in UPSTREAM:
        assert warning not in demo.stderr, warning


def test_training_logs_every_minute_when_iterations_are_slow(monkeypatch):
    from detectron2.utils.events import EventWriter

    from resnet_det.engine import hooks

    clock, writes = [0.0], []

    class Writer(EventWriter):
        def write(self):
            writes.append((trainer.iter, clock[0]))

    class Trainer:
        max_iter = 100

    monkeypatch.setattr(hooks.time, "perf_counter", lambda: clock[0])
    writer = hooks.PeriodicWriter([Writer()], period=20, seconds=60)
    writer.trainer = trainer = Trainer()
    for trainer.iter, seconds in zip(range(100), [1] * 30 + [25] * 70):  # then 25 s an iteration
        clock[0] += seconds
        writer.after_step()
    iters, times = zip(*writes)
    assert {19, 39, 59, 79, 99} <= set(iters)  # every SOLVER.LOG_PERIOD and the last iteration
    assert iters[:2] == (19, 31)  # fast iterations: the period; slow ones: 60 s after the last write
    assert max(b - a for a, b in zip(times, times[1:])) < 60 + 25  # never a minute without a line
    assert len(iters) < 40  # not every slow iteration either
