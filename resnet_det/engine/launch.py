"""Starting work: detectron2's ``launch`` for both stages' commands, the device and the number of
data-loader workers sized to the machine."""
from __future__ import annotations

import logging
import os
import platform

import torch
from detectron2.engine import default_argument_parser, launch

from resnet_det.utils.cli import add_debug_argument, in_worker

__all__ = ["available_cpus", "cpu_model", "cap_workers", "launch_main", "quiet_config_dump", "resolve_device",
           "training_argument_parser"]


def training_argument_parser(doc: str):
    """detectron2's ``default_argument_parser`` (``--config-file``, ``--resume``, ``--eval-only``,
    ``--num-gpus``, ...) with ``--config`` as a second spelling and ``--debug``, as both stages'
    commands take them; ``doc`` is the help epilog. Imports detectron2: call it after
    :func:`~resnet_det.utils.cli.silence_known_warnings`."""
    parser = default_argument_parser(epilog=doc)
    parser.add_argument("--config", dest="config_file", metavar="FILE", help="same as --config-file")
    add_debug_argument(parser)
    return parser


def launch_main(main, args, *main_args):
    """Run ``main(args, *main_args)`` in ``args.num_gpus`` processes per machine through detectron2's
    ``launch``; in workers an expected error exits with its message alone (resnet_det.utils.cli)."""
    world_size = args.num_gpus * args.num_machines
    return launch(in_worker(main) if world_size > 1 else main, args.num_gpus, num_machines=args.num_machines,
                  machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args, *main_args))


def resolve_device(requested: str) -> tuple[str, str | None]:
    """``requested`` ("cpu", "cuda", "cuda:N"), or "cpu" when it asks for CUDA on a machine
    without it; and the note saying so (else None)."""
    if requested.startswith("cuda") and not torch.cuda.is_available():
        return "cpu", f"CUDA is not available on this machine: using the CPU instead of {requested}"
    return requested, None


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cap_workers(requested: int, processes: int = 1, key="DATALOADER.NUM_WORKERS") -> tuple[int, str | None]:
    """``requested`` data-loader workers capped at the CPUs each of ``processes`` processes gets
    (more only compete for the same cores, and torch warns about it); the note saying so, or None."""
    share = max(1, available_cpus() // max(1, processes))
    if requested <= share:
        return requested, None
    return share, f"{key} {requested} is more than the {share} CPU(s) available per process: using {share}"


class _ConfigDumpFilter(logging.Filter):
    """detectron2's ``default_setup`` logs the config file and the full config (hundreds of lines,
    with terminal colour codes) besides writing OUTPUT_DIR/config.yaml: one line instead."""

    def __init__(self, file_name):
        super().__init__()
        self.file_name = file_name

    def filter(self, record):
        message = str(record.msg)
        if message.startswith("Contents of args.config_file="):
            return False
        if message.startswith("Running with full config:"):
            record.msg, record.args = f"Full config written to OUTPUT_DIR/{self.file_name}", ()
        return True


def quiet_config_dump(file_name="config.yaml") -> None:
    """Install :class:`_ConfigDumpFilter` on detectron2's logger (once)."""
    log = logging.getLogger("detectron2")
    if not any(isinstance(f, _ConfigDumpFilter) for f in log.filters):
        log.addFilter(_ConfigDumpFilter(file_name))
