"""Slow pretraining checks: 2-process DDP (gloo) and SIGKILL + --resume exactness through the CLI."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TOY_CFG = str(REPO / "configs" / "pretrain" / "toy_resnet18.yaml")


def _opts(root, out, *extra):
    return [
        "DATA.ROOT", root, "OUTPUT_DIR", str(out), "DATA.CROP_SIZE", "24", "DATA.RESIZE_RANGE", "[24, 32]",
        "DATA.TEST_RESIZE", "24", "SOLVER.IMS_PER_BATCH", "8", "SOLVER.STEP_EPOCHS", "[1]",
        "TEST.TEN_CROP", "False", "TEST.IMS_PER_BATCH", "10", "SOLVER.LOG_PERIOD", "1", *extra,
    ]


def _ddp_worker(root, out):
    """One rank: train, then write the sample indices this rank was fed, per iteration."""
    from detectron2.utils import comm

    from resnet_det.config import load_pretrain_cfg
    from resnet_det.engine.classification import ClassificationTrainer

    torch.set_num_threads(1)
    cfg = load_pretrain_cfg(TOY_CFG, _opts(root, out, "SOLVER.MAX_ITER", "4", "DATA.NUM_WORKERS", "0"))
    trainer = ClassificationTrainer(cfg)
    trainer.resume_or_load(resume=False)
    seen, batches = [], trainer.data_loader

    def recorded():  # what each micro-batch of the trainer holds, at its iteration
        for images, targets, indices in batches:
            seen.append([trainer.iter, indices.tolist()])
            yield images, targets, indices

    trainer.data_loader = recorded()
    trainer.train()
    Path(out, f"seen_rank{comm.get_rank()}.json").write_text(json.dumps(seen))


def test_ddp_two_process_gloo_disjoint_batches(toy_cls_root, tmp_path):
    from detectron2.engine import launch

    launch(_ddp_worker, 2, dist_url="auto", args=(toy_cls_root, str(tmp_path)))
    seen = [json.loads((tmp_path / f"seen_rank{r}.json").read_text()) for r in range(2)]
    for r in range(2):
        assert [it for it, _ in seen[r]] == [0, 1, 2, 3]
        assert all(len(idx) == 4 for _, idx in seen[r])  # 8 images/step over 2 ranks
    for (_, a), (_, b) in zip(*seen):
        assert not set(a) & set(b)
    everything = [i for r in range(2) for _, idx in seen[r] for i in idx]
    # 4 steps x 8 images inside the first epoch (40 images): no image repeats across ranks.
    assert len(everything) == len(set(everything)) == 32
    assert (tmp_path / "backbone.safetensors").is_file()


def _cli(root, out, *flags):
    # Flags go before the KEY VALUE overrides (argparse REMAINDER), as with detectron2's tools.
    return [sys.executable, "-W", "ignore", str(REPO / "tools" / "pretrain_cls.py"), "--config-file", TOY_CFG, *flags,
            *_opts(root, out, "SOLVER.MAX_ITER", "10", "SOLVER.CHECKPOINT_PERIOD", "2", "DATA.NUM_WORKERS", "1",
                   "TEST.EVAL_PERIOD", "5")]


def _wait_for(pred, proc, timeout=300):
    t0 = time.time()
    while not pred():
        assert proc.poll() is None, f"training exited early with {proc.returncode}"
        assert time.time() - t0 < timeout, "timed out waiting for the training to get there"
        time.sleep(0.05)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_sigkill_during_save_and_training_then_resume_is_exact(toy_cls_root, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref, run = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_cli(toy_cls_root, ref), env=env, check=True, capture_output=True)

    # 1. Killed while model_0000004.pth (the 2nd save) is being written, before its rename.
    killer = [sys.executable, "-W", "ignore", str(REPO / "tests" / "kill_during_save.py"), "2"]
    proc = subprocess.run(killer + _cli(toy_cls_root, run)[3:], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert list(run.glob(".model_0000004.pth.*.tmp"))  # the partial file is a temporary one
    assert (run / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not (run / "model_0000004.pth").exists()
    _weights(run / "model_0000002.pth")  # the published checkpoint is complete

    # 2. Resumed, then killed mid-training right after model_0000006.pth is published.
    pointer = run / "last_checkpoint"
    proc = subprocess.Popen(_cli(toy_cls_root, run, "--resume"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: pointer.read_text() == "model_0000006.pth", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # 3. Resumed to the end.
    done = subprocess.run(_cli(toy_cls_root, run, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in (run / "log.txt").read_text()
    assert not list(run.glob(".*.tmp"))  # the interrupted save's temp file was cleaned up
    a, b = _weights(ref / "model_final.pth"), _weights(run / "model_final.pth")
    assert a.keys() == b.keys()
    diff = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if not torch.equal(a[k], b[k])}
    assert not diff, f"resumed weights differ from the uninterrupted run: {diff}"
    # The metrics of the replayed iterations were not duplicated.
    its = [json.loads(x)["iteration"] for x in (run / "metrics.json").read_text().splitlines() if '"loss"' in x]
    assert its == list(range(1, 11))


def test_cli_nonzero_exit_and_message_for_bad_config(tmp_path):
    bad = subprocess.run([sys.executable, "-W", "ignore", str(REPO / "tools" / "pretrain_cls.py"),
                          "--config-file", TOY_CFG, "MODEL.DEPTH", "77", "OUTPUT_DIR", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "MODEL.DEPTH = 77" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "o").exists()  # failed before any work
