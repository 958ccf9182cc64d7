"""What every command line of this project shares (no torch here, so it runs before detectron2 is
imported): :func:`silence_known_warnings` at the top of an entry point, ``add_debug_argument``,
and ``sys.exit(run_cli(main))``. An expected error (:data:`EXPECTED_ERRORS`: a bad config,
dataset, image or weights file, a refused pickle, a diverged run, a missing file) prints
``error: <message>`` and exits with :data:`EXIT_EXPECTED` (2), in :func:`in_worker` processes of
detectron2's ``launch`` too; ``--debug`` or ``RESNET_DET_DEBUG=1`` shows its traceback."""
from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import sys
import warnings

__all__ = ["DEBUG_ENV", "EXIT_EXPECTED", "EXPECTED_ERRORS", "add_debug_argument", "debug_enabled",
           "expected_error_types", "in_worker", "run_cli", "silence_known_warnings"]

DEBUG_ENV = "RESNET_DET_DEBUG"
EXIT_EXPECTED = 2

# "module:Class" of the errors a user causes and a message explains. Named, not imported: an
# exception can only be an instance of a class whose module was imported, so the tuple is built
# from sys.modules at error time and this module imports nothing heavy (the deploy tools run
# without torch or detectron2). Subclasses count (UnsafeWeightsError is a WeightsFileError).
EXPECTED_ERRORS = (
    "resnet_det.config.rules:ConfigError",
    "resnet_det.data.datasets:DatasetError",
    "resnet_det.utils.image:ImageError",
    "resnet_det.deploy.runtime:DeployError",
    "resnet_det.checkpoint.io:WeightsFileError",
    "resnet_det.checkpoint.detection:WeightsMismatchError",
    "resnet_det.data.imagenet:ClassTreeError",
    "resnet_det.data.imagenet:DataLoaderWorkerError",
    "resnet_det.engine.hooks:TrainingDivergedError",
    "resnet_det.evaluation.coco:EngineUnavailableError",
    "builtins:FileNotFoundError",
)

# (category, message regex) of upstream warnings that every command printed and a user cannot
# act on: deprecations inside torch/detectron2/fvcore code, not in this project's.
_KNOWN_WARNINGS = (
    # fvcore and detectron2 script functions at import time; torch 2.14 deprecates jit.script.
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
    # detectron2's anchor generator calls torch.meshgrid without indexing=.
    (UserWarning, r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing"),
    # detectron2.model_zoo imports pkg_resources (setuptools < 81 keeps it working).
    (UserWarning, r"pkg_resources is deprecated as an API"),
    # detectron2's create_ddp_model passes broadcast_buffers to DistributedDataParallel.
    (FutureWarning, r"`broadcast_buffers` is deprecated"),
    (DeprecationWarning, r"pkg_resources is deprecated as an API"),
)
# (logger, message regex) of upstream log warnings of the same kind.
_KNOWN_LOG_WARNINGS = (
    # detectron2 asks torch.fx whether it is tracing; torch logs a note for its own callers.
    ("torch.fx._symbolic_trace", r"is_fx_tracing will return true for both fx\.symbolic_trace"),
    # torch looks for a CUDA toolkit when detectron2 imports cpp_extension; nothing is compiled.
    ("torch.utils.cpp_extension", r"No CUDA runtime is found, using CUDA_HOME"),
)


class _DropMessages(logging.Filter):
    def __init__(self, pattern):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record):
        return not self.pattern.search(record.getMessage())


def silence_known_warnings() -> None:
    """Hide the named upstream warnings (:data:`_KNOWN_WARNINGS`, :data:`_KNOWN_LOG_WARNINGS`)
    in this process; every other warning still shows. Idempotent. Call it at the top of an
    entry point, before importing detectron2."""
    for category, pattern in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name, pattern in _KNOWN_LOG_WARNINGS:
        log = logging.getLogger(name)  # created now if torch has not imported it yet
        if not any(isinstance(f, _DropMessages) and f.pattern.pattern == pattern for f in log.filters):
            log.addFilter(_DropMessages(pattern))


def expected_error_types(extra=()) -> tuple:
    """The classes of :data:`EXPECTED_ERRORS` whose modules are imported, plus ``extra``."""
    types = []
    for spec in EXPECTED_ERRORS:
        module, name = spec.split(":")
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            types.append(cls)
    return tuple(types) + tuple(extra)


def debug_enabled() -> bool:
    """Whether full tracebacks were asked for (``--debug`` or ``RESNET_DET_DEBUG`` set, not 0)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class _DebugAction(argparse.Action):
    """``--debug``: sets RESNET_DET_DEBUG=1 at once, so worker processes inherit it."""

    def __call__(self, parser, namespace, values, option_string=None):
        os.environ[DEBUG_ENV] = "1"
        setattr(namespace, self.dest, True)


def add_debug_argument(parser) -> None:
    """Add ``--debug`` (full tracebacks for expected errors too) to an argparse parser."""
    parser.add_argument("--debug", action=_DebugAction, nargs=0, default=False,
                        help=f"show the full traceback of expected errors too (same as {DEBUG_ENV}=1)")


def _message(error) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if text.startswith("Caught ") and "DataLoader worker" in text:
        # torch re-raises a loader worker's error as its type with the worker's traceback for a
        # message; the message is the traceback's last line, after "module.Type: ".
        last = text.rstrip().splitlines()[-1]
        text = last.split(f"{type(error).__name__}: ", 1)[-1]
    return text or type(error).__name__


def run_cli(main, *args, extra=(), **kwargs) -> int:
    """Call ``main(*args, **kwargs)`` and return its exit status (None -> 0). An expected error
    (see the module doc; ``extra`` adds classes) prints ``error: <message>`` and returns 2,
    unless debugging is on; so does a worker process that :func:`in_worker` stopped."""
    try:
        status = main(*args, **kwargs)
    except expected_error_types(extra) as e:
        if debug_enabled():
            raise
        print(f"error: {_message(e)}", file=sys.stderr)
        print(f"(set {DEBUG_ENV}=1 or pass --debug for the traceback)", file=sys.stderr)
        return EXIT_EXPECTED
    except Exception as e:
        # torch.multiprocessing: a worker that in_worker stopped exited with EXIT_EXPECTED after
        # printing its message; the parent adds nothing.
        if getattr(e, "exit_code", None) == EXIT_EXPECTED and not debug_enabled():
            return EXIT_EXPECTED
        raise
    return 0 if status is None else status


def _worker_main(fn, extra, *args, **kwargs):
    silence_known_warnings()
    try:
        return fn(*args, **kwargs)
    except expected_error_types(extra) as e:
        if debug_enabled():
            raise
        print(f"error: {_message(e)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_EXPECTED)  # SystemExit passes torch's worker wrapper: the exit code is seen


def in_worker(fn, extra=()):
    """``fn`` for a worker process (picklable when ``fn`` is): an expected error prints its
    message and exits with status 2, which :func:`run_cli` in the parent reports as such.
    The worker also silences the known upstream warnings."""
    return functools.partial(_worker_main, fn, tuple(extra))
