"""Resize: square input, binary labels that stay aligned, native test masks kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import FAKE_SIZE, fake_drive_zip, fake_raw, one_line_error, run_stage, write_params
from skunet.data.raw import read_archives, write_raw
from skunet.data.resize import resize_dataset, resize_image, resize_mask


def test_resize_mask_is_binary_and_aligned():
    mask = np.zeros((50, 40), np.uint8)
    mask[10:30, 5:15] = 1
    out = resize_mask(mask, 80)
    assert out.shape == (80, 80) and set(np.unique(out)) == {0, 1}
    ys, xs = np.nonzero(out)
    # the block scales by 80/50 vertically and 80/40 horizontally
    assert abs(ys.min() - 16) <= 1 and abs(ys.max() + 1 - 48) <= 1
    assert abs(xs.min() - 10) <= 1 and abs(xs.max() + 1 - 30) <= 1


def test_resize_image_is_bilinear():
    image = np.zeros((2, 2, 3), np.uint8)
    image[:, 1] = 200
    out = resize_image(image, 4)
    assert out.shape == (4, 4, 3)
    assert out[0, 0, 0] == 0 and out[0, 3, 0] == 200 and 0 < out[0, 1, 0] < 200


def test_resize_dataset_layout(tmp_path):
    raw = read_archives("drive", [fake_drive_zip(tmp_path / "DRIVE.zip")], native_size=FAKE_SIZE)
    write_raw(raw, tmp_path / "raw/drive")
    meta = resize_dataset(tmp_path / "raw/drive", tmp_path / "resized/drive", 32, native_size=FAKE_SIZE)
    out = tmp_path / "resized/drive"
    assert np.load(out / "train_images.npy").shape == (20, 32, 32, 3)
    assert set(np.unique(np.load(out / "train_labels.npy"))) <= {0, 1}
    assert np.load(out / "test_labels_native.npy").shape == (20, 24, 20)
    assert np.load(out / "test_fov_native.npy").shape == (20, 24, 20)
    assert json.loads((out / "meta.json").read_text())["test"] == meta["test"] == [f"{n:02d}" for n in range(1, 21)]


def _project(tmp_path):
    write_params(tmp_path, {"resize": {"drive": {"input_size": 32}}})
    return fake_raw(tmp_path)  # at DRIVE's native size, as the stage expects


def test_the_resize_stage_names_a_raw_image_of_another_size(tmp_path):
    raw = _project(tmp_path)
    Image.fromarray(np.zeros((100, 80), np.uint8)).save(raw / "labels" / "02.png")  # a test label
    result = run_stage("resize.py", "drive", cwd=tmp_path)
    one_line_error(result, "data/raw/drive/labels/02.png: 100 x 80 pixels (H x W), expected 584 x 565",
                   "re-run `dvc repro -f -s download@drive`")
    assert not (tmp_path / "data" / "resized").exists() or not any((tmp_path / "data" / "resized").iterdir())


@pytest.mark.parametrize(("damage", "message"), [
    ('{"dataset": "drive", "train": ["21"', "not valid JSON"),
    ('{"dataset": "drive", "train": ["21", "22"]}', "no key 'test'"),
])
def test_the_resize_stage_names_a_malformed_manifest(tmp_path, damage, message):
    raw = _project(tmp_path)
    (raw / "manifest.json").write_text(damage)
    result = run_stage("resize.py", "drive", cwd=tmp_path)
    one_line_error(result, f"data/raw/drive/manifest.json: {message}", "re-run `dvc repro -f -s download@drive`")


def test_the_resize_stage_names_a_truncated_raw_image(tmp_path):
    raw = _project(tmp_path)
    png = raw / "images" / "21.png"
    png.write_bytes(png.read_bytes()[:200])
    one_line_error(run_stage("resize.py", "drive", cwd=tmp_path), "data/raw/drive/images/21.png: unreadable image",
                   "re-run `dvc repro -f -s download@drive`")
