"""Resize: square input, binary labels that stay aligned, native test masks kept."""

from __future__ import annotations

import json

import numpy as np

from conftest import fake_drive_zip
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
    write_raw(read_archives("drive", [fake_drive_zip(tmp_path / "DRIVE.zip")]), tmp_path / "raw/drive")
    meta = resize_dataset(tmp_path / "raw/drive", tmp_path / "resized/drive", 32)
    out = tmp_path / "resized/drive"
    assert np.load(out / "train_images.npy").shape == (20, 32, 32, 3)
    assert set(np.unique(np.load(out / "train_labels.npy"))) <= {0, 1}
    assert np.load(out / "test_labels_native.npy").shape == (20, 24, 20)
    assert np.load(out / "test_fov_native.npy").shape == (20, 24, 20)
    assert json.loads((out / "meta.json").read_text())["test"] == meta["test"] == [f"{n:02d}" for n in range(1, 21)]
