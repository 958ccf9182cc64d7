"""Weight files: atomic writes, safe reading, refusal of pickles."""
import os
import pickle
import stat

import pytest
import torch

from resnet_det.checkpoint import (
    UnsafeWeightsError,
    load_state_dict_checked,
    load_state_dict_file,
    read_safetensors_metadata,
    save_backbone,
)
from resnet_det.models import build_resnet, build_vgg16
from resnet_det.utils.files import atomic_write


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pth"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"partial")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ckpt.pth"]  # no temp file left behind


def test_atomic_write_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o644


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = {"model": {"w": torch.zeros(1)}, "evil": _RunsCode()}
    torch.save(payload, tmp_path / "evil.pth")
    with pytest.raises(UnsafeWeightsError, match="convert_weights.py --allow-pickle"):
        load_state_dict_file(tmp_path / "evil.pth")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(UnsafeWeightsError, match="pickle file"):
        load_state_dict_file(tmp_path / "evil.pkl")
    assert not (tmp_path / "PWNED").exists()


def test_state_dict_containers_and_errors(tmp_path):
    sd = build_resnet(18).state_dict()
    torch.save({"model": sd, "iteration": 5}, tmp_path / "d2.pth")
    assert load_state_dict_file(tmp_path / "d2.pth").keys() == sd.keys()
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_state_dict_file(tmp_path / "missing.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_state_dict_file(tmp_path / "junk.safetensors")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        load_state_dict_file(tmp_path / "list.pth")


@pytest.mark.parametrize("build", [lambda: build_resnet(18, num_classes=5), lambda: build_vgg16(5)])
def test_backbone_export_round_trip(tmp_path, build):
    model = build()
    path = save_backbone(model, tmp_path / "bb")
    state, meta = load_state_dict_file(path), read_safetensors_metadata(path)
    assert meta["arch"] == dict(model.arch, num_classes=0)
    assert (tmp_path / "bb.json").exists()
    missing = load_state_dict_checked(build(), state, allow_missing=("linear.", "fc8."))
    assert missing and all(k.startswith(("linear.", "fc8.")) for k in missing)


@pytest.mark.parametrize("name, content", [
    ("weights.pth", b"MODEL:\n  WEIGHTS: ''\n"),  # a yaml saved under a weights name
    ("notes.txt", b"hello world\n"),
    ("model.pt", b""),
])
def test_a_text_file_is_not_a_weights_file_rather_than_an_unsafe_pickle(tmp_path, name, content):
    from resnet_det.checkpoint.detection import ResNetDetCheckpointer

    path = tmp_path / name
    path.write_bytes(content)
    for load in (lambda: load_state_dict_file(path),
                 lambda: ResNetDetCheckpointer(torch.nn.Linear(2, 2)).load(str(path))):
        with pytest.raises(Exception) as info:
            load()
        message = str(info.value)
        assert f"{path} is not a weights file" in message and ".safetensors" in message
        assert "unpickling" not in message and not isinstance(info.value, UnsafeWeightsError)
        from resnet_det.checkpoint import WeightsFileError

        assert isinstance(info.value, WeightsFileError)
