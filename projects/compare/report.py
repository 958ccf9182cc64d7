"""The comparison's outputs: comparison.json (everything), .csv and .md (one row per run) and
comparison.png (AP against latency, one marker per backbone and one colour per runtime; AP
against parameters beside it), all from the same list of run records."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from resnet_det.utils.files import atomic_write, write_json
from resnet_det.utils.plotting import new_figure, save_figure

__all__ = ["columns", "rows", "write_outputs"]

MARKERS = "osD^vP*Xph<>"


def _runtimes(runs) -> list[str]:
    """Every latency key of the runs, PyTorch first, in the order first seen."""
    keys = {}
    for run in runs:
        keys.update(dict.fromkeys(run.get("latency_ms", {})))
    return list(keys)


def _per_class(runs) -> list[str]:
    keys = {}
    for run in runs:
        keys.update(dict.fromkeys(run.get("accuracy", {}).get("per_class", {})))
    return list(keys)


def columns(runs) -> list[tuple[str, str]]:
    """``(column title, unit or '')`` of the table, per-class and runtime columns included."""
    return ([("label", ""), ("backbone", ""), ("init", ""), ("seed", ""), ("status", ""), ("params", "M"),
             ("GFLOPs", ""), ("AP", ""), ("AP50", ""), ("AP75", "")]
            + [(k, "") for k in _per_class(runs)]
            + [("train", "min"), ("train CPU", "min"), ("peak RSS", "GiB")]
            + [(k, "ms") for k in _runtimes(runs)])


def _value(run, title):
    acc, train = run.get("accuracy", {}), run.get("train", {})
    simple = {
        "label": run["label"], "backbone": run["name"], "init": run["init"], "seed": run["seed"],
        "status": run["status"],
        "params": run["params"] / 1e6 if run.get("params") is not None else None,
        "GFLOPs": run.get("gflops"),
        "train": train["wall_s"] / 60 if train.get("wall_s") is not None else None,
        "train CPU": train["cpu_s"] / 60 if train.get("cpu_s") is not None else None,
        "peak RSS": train["peak_rss_bytes"] / 2**30 if train.get("peak_rss_bytes") else None,
    }
    if title in simple:
        return simple[title]
    if title in ("AP", "AP50", "AP75"):
        return acc.get(title)
    if title in acc.get("per_class", {}):
        return acc["per_class"][title]
    return run.get("latency_ms", {}).get(title)


def _text(value, digits=1) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def rows(runs) -> list[list[str]]:
    """The table's cells as text (floats to one decimal, two for GiB; missing values empty)."""
    titles = [t for t, _ in columns(runs)]
    return [[_text(_value(run, t), 2 if t == "peak RSS" else 1) for t in titles] for run in runs]


def _header(runs) -> list[str]:
    return [f"{t} ({u})" if u else t for t, u in columns(runs)]


def _markdown(result) -> str:
    runs, m = result["runs"], result["machine"]
    lines = ["| " + " | ".join(_header(runs)) + " |", "|" + "|".join("---" for _ in _header(runs)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(runs)]
    notes = [f"Test set: {result['test_dataset']}; AP figures from each run's eval_results.json.",
             f"Latency: median per image over {result['latency_images']} test images after a warm-up, "
             f"{m['threads']} threads, on {m['cpu']} ({m['cpu_count']} CPUs), {m['date']}; "
             "load average before/after timing per run in comparison.json (other work slows every figure).",
             "GFLOPs: fvcore multiply-adds on the first test image at the test size; params: the whole detector.",
             "train: wall time of the training process (evaluation included), train CPU: its CPU time "
             "(loader workers included); peak RSS: its largest process."]
    for run in runs:
        if run.get("message"):
            notes.append(f"{run['label']}: {run['status']}: {run['message'].splitlines()[0][:300]}")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _csv(runs) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_header(runs))
    writer.writerows(rows(runs))
    return out.getvalue()


def plot(runs, path, metric="AP") -> Path:
    """comparison.png: ``metric`` against latency (log scale) per runtime, and against parameters."""
    fig = new_figure((12, 4.8))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    done = [r for r in runs if r.get("accuracy", {}).get(metric) is not None]
    runtimes = _runtimes(done)
    colours = {k: f"C{i}" for i, k in enumerate(runtimes)}
    for i, run in enumerate(done):
        marker, ap = MARKERS[i % len(MARKERS)], run["accuracy"][metric]
        points = [(ms, k) for k, ms in run.get("latency_ms", {}).items() if ms is not None]
        if len(points) > 1:  # one backbone's runtimes joined: the same AP, different speeds
            left.plot(sorted(p[0] for p in points), [ap] * len(points), color="0.8", zorder=1)
        for ms, key in points:
            left.scatter(ms, ap, marker=marker, color=colours[key], s=60, zorder=2)
        right.scatter(run["params"] / 1e6, ap, marker=marker, color="0.2", s=60, label=run["label"])
        right.annotate(run["label"], (run["params"] / 1e6, ap), xytext=(5, 3), textcoords="offset points",
                       fontsize=8)
    for key in runtimes:  # legend entries: the colour of each runtime
        left.scatter([], [], color=colours[key], marker="s", label=key)
    left.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator

    left.xaxis.set_minor_locator(LogLocator(subs=(2, 3, 5)))
    for axis in (left.xaxis.set_major_formatter, left.xaxis.set_minor_formatter):  # 300, not 3x10^2
        axis(FuncFormatter(lambda v, _: f"{v:g}"))
    left.set_xlabel("latency per image (ms, log scale)")
    right.set_xlabel("parameters (M)")
    for ax in (left, right):
        ax.set_ylabel(f"{metric} (%)")
        # From 0: differences drawn to scale, not magnified; room above for the labels.
        ax.set_ylim(0, 1.15 * max([r["accuracy"][metric] for r in done], default=1) + 0.5)
        ax.grid(alpha=0.3)
        if done:
            ax.legend(fontsize=8, loc="best")  # where it hides the fewest points
    left.set_title("accuracy vs latency (colour: runtime, marker: backbone)", fontsize=10)
    right.set_title("accuracy vs parameters (marker: backbone)", fontsize=10)
    return save_figure(fig, path)


def write_outputs(result, output_dir) -> dict:
    """comparison.json/.csv/.md/.png in ``output_dir``; returns their paths."""
    out = Path(output_dir)
    paths = {"json": write_json(out / "comparison.json", result)}
    for suffix, text in (("csv", _csv(result["runs"])), ("md", _markdown(result))):
        with atomic_write(out / f"comparison.{suffix}", "w") as f:
            f.write(text)
        paths[suffix] = out / f"comparison.{suffix}"
    paths["png"] = plot(result["runs"], out / "comparison.png")
    return paths
