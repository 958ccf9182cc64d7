"""tools/eval_coco.py and detectron2's COCOEvaluator run faster-coco-eval and give pycocotools'
numbers."""
import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_evaluation import predictions

from projects.toy_data import make_toy_data
from resnet_det.data import datasets as ds
from resnet_det.data.datasets import DatasetError
from resnet_det.evaluation import (
    COCO_STAT_NAMES,
    coco_engine,
    evaluate_coco_files,
    use_in_detectron2,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    """Toy COCO val, perturbed predictions, and detectron2's COCOEvaluator results on them
    (pycocotools)."""
    root = str(tmp_path_factory.mktemp("toy_eval_coco"))
    make_toy_data(root, kinds=("coco",), num_det_train=1, num_det_val=16)
    gt = f"{root}/coco/annotations/instances_val2017.json"
    ds.register_coco_json("evalcoco_toy_val", gt, f"{root}/coco/val2017")
    # use_fast_impl=False: detectron2 with pycocotools, the reference.
    evaluator = COCOEvaluator("evalcoco_toy_val", tasks=("bbox",), distributed=False,
                              output_dir=root, use_fast_impl=False)
    evaluator.reset()
    evaluator.process(*predictions(DatasetCatalog.get("evalcoco_toy_val"),
                                   np.random.default_rng(0)))
    d2 = evaluator.evaluate()["bbox"]
    return gt, os.path.join(root, "coco_instances_results.json"), d2


def pycocotools_stats(gt, dt):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(dt), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def test_library_matches_pycocotools_and_detectron2_evaluator(coco_run):
    gt, dt, d2 = coco_run
    assert coco_engine()[2] == "faster-coco-eval"  # installed by tools/setup_env.sh
    reference = pycocotools_stats(gt, dt)
    ours = evaluate_coco_files(gt, dt, verbose=False)
    assert list(ours) == list(COCO_STAT_NAMES)
    # faster-coco-eval's C++ precision differs from pycocotools' in the last bit at most.
    np.testing.assert_allclose([ours[k] for k in COCO_STAT_NAMES], reference, rtol=0, atol=1e-12)
    slow = evaluate_coco_files(gt, dt, verbose=False, engine="pycocotools")
    assert [slow[k] for k in COCO_STAT_NAMES] == list(reference)
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        if ours[name] >= 0:
            assert ours[name] * 100 == pytest.approx(d2[name], abs=1e-9), name
    assert 0 < ours["AP"] < 1 and 0 < d2["AP"] < 100
    assert sum(v < 0 for v in reference) == 2  # no large objects in the toy set: APl = ARl = -1


def test_detectron2_coco_evaluator_runs_faster_coco_eval(coco_run):
    from detectron2.evaluation import coco_evaluation
    from faster_coco_eval import COCOeval_faster

    import resnet_det  # noqa: F401  (installs the engine)

    assert use_in_detectron2() == "faster-coco-eval"
    assert coco_evaluation.COCOeval_opt is COCOeval_faster
    evaluator = COCOEvaluator("evalcoco_toy_val", tasks=("bbox",), distributed=False)
    assert evaluator._use_fast_impl
    evaluator.reset()
    evaluator.process(*predictions(DatasetCatalog.get("evalcoco_toy_val"),
                                   np.random.default_rng(0)))
    fast = evaluator.evaluate()["bbox"]
    _, _, d2 = coco_run
    assert fast.keys() == d2.keys() and len(fast) == 6 + 5  # 6 stats + AP per toy class
    for name, value in d2.items():
        assert fast[name] == pytest.approx(value, abs=1e-9, nan_ok=True), name


def check_cli_output(stdout, out_json, gt, dt):
    printed = [float(v) for v in re.findall(r"\] = (-?\d\.\d{3})", stdout)]
    expected = pycocotools_stats(gt, dt)
    assert printed == [float(f"{v:.3f}") for v in expected]
    saved = json.loads(out_json.read_text())
    np.testing.assert_allclose([saved[k] for k in COCO_STAT_NAMES], expected, rtol=0, atol=1e-12)
    assert saved["engine"] == "faster-coco-eval"


def test_cli_prints_the_12_pycocotools_numbers_and_saves_them(coco_run, tmp_path, capsys):
    gt, dt, _ = coco_run
    script = os.path.join(REPO, "tools", "eval_coco.py")
    spec = importlib.util.spec_from_file_location("eval_coco", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "sub" / "stats.json"
    assert tool.main(["--gt", gt, "--dt", dt, "--out", str(out)]) == 0
    check_cli_output(capsys.readouterr().out, out, gt, dt)
    assert tool.main(["--gt", gt, "--dt", str(tmp_path / "missing.json")]) == 2
    missing = tmp_path / "missing.json"
    assert f"error: results json {missing} does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_as_a_script(coco_run, tmp_path):
    gt, dt, _ = coco_run
    out = tmp_path / "stats.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "eval_coco.py"), "--gt", gt, "--dt", dt,
         "--out", str(out)],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    check_cli_output(proc.stdout, out, gt, dt)


def test_bad_result_files_fail_with_the_file_named(coco_run, tmp_path):
    gt, dt, _ = coco_run
    detections = json.loads(open(dt).read())
    cases = {
        "empty.json": ([], "has no detections"),
        "other_split.json": ([dict(detections[0], image_id=999999)], r"image ids \[999999\]"),
        "contiguous_ids.json": ([dict(detections[0], category_id=0)],
                                r"category ids \[0\] .*contiguous 0-based class indices"),
        "gt_instead.json": (json.loads(open(gt).read()), "looks like a ground-truth file"),
        "broken.json": ("[{", "is not valid json"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(DatasetError, match=message) as info:
            evaluate_coco_files(gt, str(path), verbose=False)
        assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match="nothere.json does not exist"):
        evaluate_coco_files(str(tmp_path / "nothere.json"), dt)


def test_pycocotools_is_the_fallback_without_faster_coco_eval(coco_run, monkeypatch):
    from detectron2.evaluation import coco_evaluation

    gt, dt, _ = coco_run
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import now fails
    assert coco_engine()[2] == "pycocotools"
    with pytest.raises(ImportError, match="faster-coco-eval is not installed"):
        coco_engine("faster")
    stats = evaluate_coco_files(gt, dt, verbose=False)
    assert [stats[k] for k in COCO_STAT_NAMES] == list(pycocotools_stats(gt, dt))
    monkeypatch.setattr(coco_evaluation, "COCOeval_opt", coco_evaluation.COCOeval)
    assert use_in_detectron2() == "pycocotools"
    assert coco_evaluation.COCOeval_opt is coco_evaluation.COCOeval
