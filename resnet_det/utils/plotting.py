"""The one plotting style (matplotlib's Agg canvas, no pyplot state) of every figure here, and the
training curves of both stages.

One look for every ``curves.png`` (pretraining: top-1 error; detection: losses, learning rate,
AP per evaluation): :func:`plot_metric_curves` draws panels of series read from the json lines
that the trainers write (``metrics.json``).
"""
from __future__ import annotations

import json
from pathlib import Path

from resnet_det.utils.files import atomic_write

__all__ = ["detection_curve_panels", "new_figure", "plot_detection_curves", "plot_metric_curves",
           "pretraining_curve_panels", "read_metrics_json", "save_figure"]


def new_figure(figsize=(6, 4), dpi: int = 100):
    """A matplotlib Figure on the Agg canvas (no display, no pyplot state: safe in trainers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Lay out ``fig`` (made by :func:`new_figure`) and write it to ``path`` atomically
    (parents created); returns the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    return path


def read_metrics_json(path) -> list[dict]:
    """The records of a json-lines metrics file, one per iteration, sorted by iteration.

    Lines written for the same iteration (detectron2 writes an evaluation beside the losses;
    a resumed run replays iterations) are merged, later values winning; unreadable lines (a
    write cut by a kill) are skipped.
    """
    merged = {}
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("iteration"), (int, float)):
            merged.setdefault(record["iteration"], {}).update(record)
    return [merged[k] for k in sorted(merged)]


def _series(records, key):
    return [(r["iteration"], r[key]) for r in records
            if isinstance(r.get(key), (int, float)) and r[key] == r[key]]


def plot_metric_curves(panels, path, panel_size=(6, 4)):
    """Draw ``panels`` side by side and save them to ``path``; returns the Figure's path.

    ``panels``: list of ``(ylabel, [(label, [(iteration, value), ...], marker), ...], log)``;
    empty series are left out, and a panel with no series is not drawn.
    """
    panels = [(y, [s for s in series if s[1]], log) for y, series, log in panels]
    panels = [p for p in panels if p[1]] or [("(no metrics recorded yet)", [], False)]
    fig = new_figure((panel_size[0] * len(panels), panel_size[1]))
    for i, (ylabel, series, log) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for label, points, marker in series:
            # A lone point (the first log line, one evaluation) needs a marker to be seen.
            ax.plot(*zip(*points), marker=marker or ("o" if len(points) == 1 else None), label=label)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if series:
            ax.legend()
    return save_figure(fig, path, dpi=100)


def pretraining_curve_panels(records):
    """Panels of a pretraining run's metrics.json: train/val top-1 error."""
    return [("top-1 error (%)", [("train (augmented batches)", _series(records, "train_top1_err"), None),
                                 ("val, centre crop", _series(records, "val_top1_err"), "."),], False)]


def detection_curve_panels(records):
    """Panels of a detectron2 run's metrics.json: total loss and each loss term, learning rate,
    and AP / AP50 of each evaluation (every test set's ``bbox/AP``, ``bbox/AP50``)."""
    keys = sorted({k for r in records for k in r})
    losses = ["total_loss"] + [k for k in keys if k.startswith("loss_")]
    evals = [k for k in keys if k.endswith("bbox/AP") or k.endswith("bbox/AP50")]
    return [("loss", [(k, _series(records, k), None) for k in losses], True),
            ("learning rate", [("lr", _series(records, "lr"), None)], False),
            ("AP (%)", [(k, _series(records, k), ".") for k in evals], False)]


def plot_detection_curves(metrics_json, path=None):
    """``curves.png`` (beside ``metrics_json`` unless ``path``) of a detectron2 training run."""
    path = path or Path(metrics_json).with_name("curves.png")
    return plot_metric_curves(detection_curve_panels(read_metrics_json(metrics_json)), path)
