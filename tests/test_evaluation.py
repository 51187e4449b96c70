"""Evaluation: predictions saved as native-size PNGs; metrics recomputed from them agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_line_error, run_stage, write_params
from skunet import metrics
from skunet.errors import SkunetError
from skunet.evaluation import evaluate_model, to_native
from test_training import _checkpoint


@pytest.fixture
def resized(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "resized" / "drive"
    folder.mkdir(parents=True)
    labels = rng.random((3, 41, 37)) > 0.85
    fovs = np.zeros((3, 41, 37), bool)
    fovs[:, 3:-3, 3:-3] = True
    np.save(folder / "test_images.npy", rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    np.save(folder / "test_labels_native.npy", labels.astype(np.uint8))
    np.save(folder / "test_fov_native.npy", fovs.astype(np.uint8))
    (folder / "meta.json").write_text(json.dumps({"test": ["01", "02", "03"]}))
    return folder


def test_to_native_is_bilinear_and_clipped():
    prob = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    out = to_native(prob, (3, 5))
    assert out.shape == (3, 5) and out.min() >= 0 and out.max() <= 1
    assert np.all(np.diff(out[0]) >= 0)


def test_metrics_recomputed_from_the_pngs_agree(tmp_path, resized):
    # probabilities spread over (0, 1) rather than an untrained net's values all near 0.5
    model = torch.nn.Conv2d(3, 1, kernel_size=1)
    with torch.no_grad():
        model.weight.fill_(4.0)
        model.bias.fill_(-6.0)
    result = evaluate_model(model, resized, tmp_path / "pred", tmp_path / "m.json", tmp_path / "plots",
                            "drive/unet", threshold=0.5, curve_points=50, device=torch.device("cpu"))
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved == json.loads(json.dumps(result))
    labels = np.load(resized / "test_labels_native.npy")
    fovs = np.load(resized / "test_fov_native.npy")
    pngs = [np.asarray(Image.open(tmp_path / "pred" / f"{s}.png")) for s in ("01", "02", "03")]
    assert all(p.shape == (41, 37) and p.dtype == np.uint8 for p in pngs)
    again = metrics.evaluate(list(labels), [metrics.uint8_to_probability(p) for p in pngs], list(fovs))
    # only pixels within 0.5/255 of the threshold (stored as 127 or 128) can change side
    near = sum(int(np.isin(p, (127, 128)).sum()) for p in pngs)
    for protocol in ("paper", "fov"):
        for key in ("tp", "fp", "fn", "tn"):
            assert abs(again[protocol][key] - saved[protocol][key]) <= near
        for key in ("f1", "accuracy", "auc"):
            assert again[protocol][key] == pytest.approx(saved[protocol][key], abs=0.01)
    for kind in ("roc", "pr", "per_image"):
        assert (tmp_path / "plots" / kind / "drive" / "unet.csv").stat().st_size > 0


@pytest.mark.parametrize("name", ["unet", "unet_dropblock", "skunet"])
def test_a_prediction_depends_on_its_image_only(name):
    """The test-time forward pass runs in eval mode whatever mode the model arrives in: BatchNorm
    on its running statistics (not the batch's) and DropBlock off. So an image's probabilities
    are the same alone or beside others, and the same on every call."""
    from skunet.evaluation import predict
    from skunet.config import DropBlockSpec, ModelConfig
    from skunet.models import build_model

    torch.manual_seed(0)
    drop = DropBlockSpec(block_size=3, keep_prob=0.5) if name != "unet" else None
    model = build_model(ModelConfig(name=name, base_width=4, depth=3, dropblock=drop))
    with torch.no_grad():  # running statistics away from their start, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    model.train()  # as the training loop leaves it
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    together = predict(model, images, torch.device("cpu"), batch_size=3)
    alone = np.concatenate([predict(model, images[i : i + 1], torch.device("cpu"), batch_size=1) for i in range(3)])
    np.testing.assert_allclose(alone, together, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(predict(model, images, torch.device("cpu"), batch_size=3), together)


@pytest.mark.parametrize(("name", "damage", "message"), [
    ("test_images.npy", b"\x93NUMPY garbage", "truncated or not a .npy array"),
    ("test_labels_native.npy", None, "truncated or not a .npy array"),
    ("meta.json", b'{"test": ["01", ', "not valid JSON"),
    ("meta.json", b'{"train": []}', "no key 'test'"),
])
def test_damaged_resized_data_names_the_file_and_the_stage(tmp_path, resized, name, damage, message):
    path = resized / name
    path.write_bytes(damage if damage is not None else path.read_bytes()[:-100])
    with pytest.raises(SkunetError) as err:
        evaluate_model(torch.nn.Conv2d(3, 1, 1), resized, tmp_path / "pred", tmp_path / "m.json",
                       tmp_path / "plots", "drive/unet", threshold=0.5, curve_points=50, device=torch.device("cpu"))
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)
    assert str(err.value).endswith("re-run `dvc repro -f -s resize@drive` to write it again")
    assert not (tmp_path / "pred").exists() and not (tmp_path / "m.json").exists()


def test_the_evaluate_stage_names_a_truncated_resized_array(tmp_path, resized):
    _checkpoint(tmp_path / "models" / "drive" / "unet.pt")
    write_params(tmp_path)
    (tmp_path / "data").mkdir()
    resized.parent.rename(tmp_path / "data" / "resized")
    array = tmp_path / "data" / "resized" / "drive" / "test_fov_native.npy"
    array.write_bytes(array.read_bytes()[:-100])
    one_line_error(run_stage("evaluate.py", "drive", "unet", cwd=tmp_path),
                   "data/resized/drive/test_fov_native.npy: truncated", "`dvc repro -f -s resize@drive`")
    assert not (tmp_path / "predictions").exists() and not (tmp_path / "metrics").exists()
