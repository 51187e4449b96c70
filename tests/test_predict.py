"""skunet predict and skunet evaluate on a tiny pipeline: the round trips (the stage's own prediction
PNGs and metrics, byte for byte) and every bad input as one line, the other images still done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, fake_raw, run_stage, write_params

TINY = {"resize": {"drive": {"input_size": 64}},
        "train": {"common": {"epochs": 1, "max_train_samples": 8}, "drive": {"batch_size": 2}},
        "models": {"unet": {"base_width": 4, "depth": 2}}}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Raw DRIVE-sized data (two test images), resized, augmented, a U-Net trained for one epoch and
    evaluated: what `dvc repro` leaves, made stage by stage."""
    root = tmp_path_factory.mktemp("project")
    write_params(root, TINY)
    fake_raw(root, "drive")
    for stage, args in (("resize.py", ["drive"]), ("augment.py", ["drive"]), ("train.py", ["drive", "unet"]),
                        ("evaluate.py", ["drive", "unet"])):
        result = run_stage(stage, *args, cwd=root)
        assert result.returncode == 0, result.stderr[-2000:]
    return root


def skunet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "skunet", *args], cwd=cwd, env=env, capture_output=True, text=True)


def errors(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_predict_on_the_test_images_gives_the_evaluate_stage_png_byte_for_byte(project, tmp_path):
    images = project / "data" / "raw" / "drive" / "images"
    result = skunet("predict", "models/drive/unet.pt", str(images / "01.png"), str(images / "02.png"),
                    "--out", str(tmp_path / "out"), "--fov", "--panel", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    for stem in ("01", "02"):
        stage_png = project / "predictions" / "drive" / "unet" / f"{stem}.png"
        assert (tmp_path / "out" / f"{stem}_prob.png").read_bytes() == stage_png.read_bytes()
        level = np.asarray(Image.open(stage_png))
        mask = np.asarray(Image.open(tmp_path / "out" / f"{stem}_mask.png"))
        assert set(np.unique(mask)) <= {0, 255} and ((level > 127) == (mask == 255)).all()
        assert np.asarray(Image.open(tmp_path / "out" / f"{stem}_fov.png")).shape == level.shape
        assert np.asarray(Image.open(tmp_path / "out" / f"{stem}_panel.png")).shape == (584, 3 * 565 + 16, 3)
    assert "2 of 2 images segmented" in result.stdout


@pytest.mark.slow
def test_evaluate_on_the_stage_predictions_gives_the_stage_metrics(project, tmp_path):
    out = tmp_path / "scored"
    result = skunet("evaluate", "predictions/drive/unet", "--dataset", "drive", "--out", str(out), cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    stage = project / "metrics" / "drive" / "unet.json"
    assert (out / "metrics.json").read_bytes() == stage.read_bytes()
    assert (out / "plots" / "per_image" / "drive.csv").read_text() == \
        (project / "plots" / "per_image" / "drive" / "unet.csv").read_text()
    assert "| **yours** | protocol `paper` |" in result.stdout and "| skunet | Table 3 |" in result.stdout
    assert "| rsan | Table 5 |" in result.stdout and "consistent with" in result.stdout


@pytest.mark.slow
def test_evaluate_names_each_missing_extra_and_mis_sized_prediction(project, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    level = np.asarray(Image.open(project / "predictions" / "drive" / "unet" / "01.png"))
    np.save(folder / "01_probability.npy", level / 255.0)  # a float map, matched by its id
    Image.fromarray(level[:-1]).save(folder / "02.png")  # one row short
    (folder / "21_test.png").write_bytes(b"")  # a training image: matches no test id
    out = tmp_path / "scored"
    result = skunet("evaluate", str(folder), "--dataset", "drive", "--out", str(out), cwd=project)
    assert result.returncode == 2
    lines = errors(result)
    assert len(lines) == 1 and "02.png: 565 x 583 px, test image 02 is 565 x 584" in lines[0], lines
    assert not out.exists()
    (folder / "02.png").unlink()
    result = skunet("evaluate", str(folder), "--dataset", "drive", "--out", str(out), cwd=project)
    assert errors(result) == [f"error: {folder}: no prediction for test image 02"] and result.returncode == 2
    assert not out.exists()
    Image.fromarray(level).save(folder / "02_a.png")
    Image.fromarray(level).save(folder / "02_b.png")
    lines = errors(skunet("evaluate", str(folder), "--dataset", "drive", "--out", str(out), cwd=project))
    assert lines == [f"error: {folder}: 2 predictions for test image 02: 02_a.png, 02_b.png"]
    (folder / "02_b.png").unlink()
    result = skunet("evaluate", str(folder), "--dataset", "drive", "--out", str(out), cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"note: {folder / '21_test.png'}: matches no test image of drive; ignored" in result.stderr
    scored = json.loads((out / "metrics.json").read_text())["paper"]
    assert sum(scored[k] for k in ("tp", "fp", "fn", "tn")) == 2 * 584 * 565


def _bad_inputs(folder: Path) -> dict[str, str]:
    """Each bad input of `skunet predict`, and a part of its one-line error."""
    folder.mkdir()
    (folder / "text.png").write_text("not an image\n")
    (folder / "empty.jpg").write_bytes(b"")
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(folder / "deep.png")
    Image.fromarray(np.zeros((64, 64, 4), np.uint8), "RGBA").save(folder / "alpha.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "tiny.png")
    return {"text.png": "not an image this tool reads", "empty.jpg": "not an image this tool reads",
            "deep.png": "16-bit", "alpha.png": "RGBA image (4 channels", "tiny.png": "too small to segment"}


@pytest.mark.slow
def test_predict_names_each_bad_image_in_one_line_and_does_the_others(project, tmp_path):
    bad = _bad_inputs(tmp_path / "in")
    good = tmp_path / "in" / "grey.gif"
    Image.fromarray(np.asarray(Image.open(project / "data/raw/drive/images/01.png").convert("L"))).save(good)
    result = skunet("predict", "models/drive/unet.pt", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                    cwd=project)
    assert result.returncode == 2
    lines = errors(result)
    assert len(lines) == len(bad), lines
    for name, part in bad.items():
        (line,) = [line for line in lines if f"/{name}: " in line]
        assert part in line, line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["grey_mask.png", "grey_prob.png"]
    assert "1 of 6 images segmented, 5 not (above)" in result.stdout


@pytest.mark.slow
def test_predict_refuses_an_output_folder_it_cannot_write_in_one_line(project, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = skunet("predict", "models/drive/unet.pt", "data/raw/drive/images/01.png",
                    "--out", str(tmp_path / "a-file" / "out"), cwd=project)
    assert result.returncode == 2
    (line,) = errors(result)
    assert f"{tmp_path / 'a-file' / 'out'}: cannot write here" in line and "choose another --out" in line


@pytest.mark.slow
def test_evaluate_scores_the_folder_predict_writes_and_predict_skips_its_own_results(project):
    """`skunet predict` into a folder inside its input, twice, then `skunet evaluate` on that folder:
    the second run leaves its own results alone, evaluate takes each <id>_prob.png (its mask and
    panel set aside) and gives the evaluate stage's metrics byte for byte."""
    images = project / "data" / "raw" / "drive" / "images"
    inputs = project / "inputs"
    inputs.mkdir()
    for stem in ("01", "02"):
        (inputs / f"{stem}.png").write_bytes((images / f"{stem}.png").read_bytes())
    for _ in range(2):
        result = skunet("predict", "models/drive/unet.pt", str(inputs), "--out", str(inputs / "seg"), "--panel",
                        cwd=project)
        assert result.returncode == 0 and "2 of 2 images segmented" in result.stdout, result.stderr[-2000:]
    assert sorted(p.name for p in (inputs / "seg").iterdir()) == [
        f"{s}_{kind}.png" for s in ("01", "02") for kind in ("mask", "panel", "prob")]
    result = skunet("evaluate", str(inputs / "seg"), "--dataset", "drive", "--out", str(project / "scored"),
                    cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (project / "scored" / "metrics.json").read_bytes() == (project / "metrics/drive/unet.json").read_bytes()
    result = skunet("evaluate", str(inputs / "seg"), "--dataset", "drive", "--out", str(project / "s2"),
                    "--threshold", "127", cwd=project)
    assert errors(result) == ["error: --threshold 127.0: give a probability in (0, 1) (maps are read as "
                              "probabilities, 8-bit levels / 255)"]
