"""Run a tool and SIGKILL it in the middle of its N-th checkpoint save: after some bytes went to
the (temporary) file, before the save completes. Kill-during-save tests run it as

    python tests/kill_during_save.py N tools/TOOL.py ARGS...
"""
import os
import runpy
import signal
import sys

import torch

real_save, calls, kill_at = torch.save, [], int(sys.argv[1])


def save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) == kill_at:
        f.write(b"partial checkpoint" * 1000)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)


torch.save = save
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
