"""One training per backbone through tools/train_det.py, each in its own OUTPUT_DIR and process.

A child process per training gives each run its own peak RSS and CPU time (``os.wait4``'s
rusage; in one process all trainings would share one peak) and leaves the folder exactly as a user's
``train_det`` run: inspectable, resumable with ``--resume``, usable with ``--runs``. The
comparison's own record of a run (wall time, peak memory, divergence) is :data:`RECORD`
beside the run's files.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from resnet_det.config import ConfigError, load_config
from resnet_det.engine.detection import OUTPUT_CONFIG, RESULTS_FILE
from resnet_det.utils.files import write_json

__all__ = ["RECORD", "config_differences", "read_record", "run_state", "train"]

ROOT = Path(__file__).resolve().parents[2]
TRAIN_TOOL = ROOT / "tools" / "train_det.py"
RECORD = "compare_run.json"  # the comparison's record of a training: wall time, peak RSS, status
CONSOLE = "train_console.log"  # the training process's stdout and stderr
FINAL_WEIGHTS = "model_final.pth"
# Keys that train_det's setup adapts to the machine, and the folder itself: not part of "the
# same run".
IGNORED_KEYS = ("MODEL.DEVICE", "DATALOADER.NUM_WORKERS", "OUTPUT_DIR")


def _flatten(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", _plain(value)


def _plain(value):
    # A tuple written to yaml reads back as a list.
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def config_differences(wanted, existing) -> list[str]:
    """``KEY: existing -> wanted`` for every key (but :data:`IGNORED_KEYS`) whose value differs."""
    a, b = dict(_flatten(wanted)), dict(_flatten(existing))
    return [f"{k}: {b.get(k)!r} -> {a.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in IGNORED_KEYS and a.get(k) != b.get(k)]


def read_record(folder) -> dict:
    """The comparison's :data:`RECORD` of a run folder ({} when it has none)."""
    path = Path(folder) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def run_state(cfg, folder) -> str:
    """``new``, ``finished``, ``diverged`` (recorded so, not retried) or ``unfinished`` for the run
    of ``cfg`` in ``folder``; :class:`ConfigError` if the folder holds a run of another config."""
    folder = Path(folder)
    written = folder / OUTPUT_CONFIG
    if not written.is_file():
        return "new"
    differences = config_differences(cfg, load_config(str(written)))
    if differences:
        shown = "\n  ".join(differences[:10]) + ("\n  ..." if len(differences) > 10 else "")
        raise ConfigError(f"{folder} holds a run of another config ({written} -> this comparison):\n  {shown}\n"
                          "Choose another --output (or label=), or delete the folder to train it again.")
    if (folder / RESULTS_FILE).is_file() and (folder / FINAL_WEIGHTS).is_file():
        return "finished"
    if read_record(folder).get("status") == "diverged":
        return "diverged"
    return "unfinished"


def _divergence(console: str) -> str | None:
    """The message of a diverged training in its console output (train_det's ``error:`` line)."""
    match = re.search(r"^error: (.*Training diverged at iteration \d+.*)$", console, re.M | re.S)
    return match.group(1).split("\n(set ")[0].strip() if match else None


def train(base_config, opts, folder, resume: bool) -> dict:
    """Run ``tools/train_det.py --config base_config [--resume] opts OUTPUT_DIR folder`` in a
    child process; returns (and adds to the folder's :data:`RECORD`) its wall time, peak RSS and
    status. A diverged run is recorded as such; any other failure raises :class:`ConfigError`
    with the training's last message."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(TRAIN_TOOL), "--config", str(base_config), *(["--resume"] if resume else []),
           *map(str, opts), "OUTPUT_DIR", str(folder)]
    # The child imports this checkout's resnet_det (and projects) whether or not it is installed.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    console_path = folder / CONSOLE
    start = time.perf_counter()
    with open(console_path, "a") as console:
        console.write(f"\n$ {' '.join(cmd)}\n")
        console.flush()
        # A DataLoader used earlier in this process leaves torch's SIGCHLD handler behind, which
        # checks that loader's workers whenever any child exits: not this child's business.
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL) if in_main else None
        child = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:
            child.kill()  # ^C: the child got it too; make sure it does not outlive the comparison
            child.wait()
            raise
        finally:
            if in_main:
                signal.signal(signal.SIGCHLD, previous)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    record = read_record(folder)
    # CPU time (the child and its loader workers): the compute, which other work on a shared
    # machine does not inflate as it inflates the wall time.
    segment = {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
               "peak_rss_bytes": usage.ru_maxrss * 1024, "resumed": resume, "returncode": child.returncode,
               "ended": time.strftime("%Y-%m-%d %H:%M:%S")}
    segments = record.get("segments", []) + [segment]
    record = {"segments": segments, "train_wall_s": round(sum(s["wall_s"] for s in segments), 1),
              "train_cpu_s": round(sum(s["cpu_s"] for s in segments), 1),
              "peak_rss_bytes": max(s["peak_rss_bytes"] for s in segments), "command": cmd}
    text = console_path.read_text(errors="replace")
    if child.returncode == 0:
        record["status"] = "finished"
    elif _divergence(text):
        record.update(status="diverged", message=_divergence(text))
    else:
        write_json(folder / RECORD, dict(record, status="failed"))
        last = [line for line in text.splitlines() if line.strip()][-3:]
        raise ConfigError(f"training in {folder} failed (exit status {child.returncode}; {console_path}):\n  "
                          + "\n  ".join(last))
    write_json(folder / RECORD, record)
    return record
