"""The canonical raw layout: splits, labels, FOV masks, and errors on incomplete archives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FAKE_SIZE, fake_drive_zip, png_bytes
from skunet.data.raw import NATIVE_SIZE, binarise, derive_fov, read_archives, write_raw
from skunet.errors import SkunetError


def test_drive_layout_and_split(tmp_path):
    archive = fake_drive_zip(tmp_path / "DRIVE.zip")
    raw = read_archives("drive", [archive], native_size=FAKE_SIZE)
    assert raw.train == [f"{n:02d}" for n in range(21, 41)]
    assert raw.test == [f"{n:02d}" for n in range(1, 21)]
    write_raw(raw, tmp_path / "raw" / "drive")
    manifest = json.loads((tmp_path / "raw/drive/manifest.json").read_text())
    assert manifest["native_size"] == [24, 20]
    assert len(list((tmp_path / "raw/drive/fov").glob("*.png"))) == 40
    assert not list(tmp_path.glob("raw/.drive*"))  # no temporary folder left behind


def test_missing_label_is_named(tmp_path):
    archive = fake_drive_zip(tmp_path / "DRIVE.zip", skip={"DRIVE/test/1st_manual/07_manual1.gif"})
    with pytest.raises(SkunetError, match="no labels for image.*07"):
        read_archives("drive", [archive], native_size=FAKE_SIZE)


def test_unreadable_image_is_named(tmp_path):
    archive = fake_drive_zip(tmp_path / "DRIVE.zip", skip={"DRIVE/test/images/03_test.tif"},
                             extra={"DRIVE/test/images/03_test.tif": b"not a tiff"})
    with pytest.raises(SkunetError, match=r"03_test.tif: unreadable image"):
        read_archives("drive", [archive], native_size=FAKE_SIZE)


def test_palette_labels_threshold_at_127():
    # DRIVE 2nd_manual palette colours (4,2,4) / (252,254,252) become grey 3 / 253
    assert binarise(np.array([0, 3, 127, 128, 253, 255])).tolist() == [False, False, False, True, True, True]


def test_derived_fov_is_the_filled_disc():
    yy, xx = np.mgrid[:101, :101]
    disc = (yy - 50) ** 2 + (xx - 50) ** 2 < 40**2
    image = np.zeros((101, 101, 3), np.uint8)
    image[disc] = 120
    image[45:55, 45:55] = 5  # a dark spot inside (fovea / vessel) must not punch a hole
    image[0, 0] = 30  # isolated noise outside must not count
    fov = derive_fov(image)
    assert fov[disc].mean() > 0.99 and fov[~disc].mean() < 0.01


@pytest.mark.parametrize("entry", [
    "DRIVE/test/images/05_test.tif",
    "DRIVE/test/1st_manual/05_manual1.gif",
    "DRIVE/test/mask/05_test_mask.gif",
    "DRIVE/test/2nd_manual/05_manual2.gif",
])
def test_an_entry_of_another_size_is_named(tmp_path, entry):
    """Every image, label, mask and second-observer label must have the native size; one of
    another size would be resized with the rest and scored against the wrong pixels."""
    h, w = FAKE_SIZE
    wrong = np.zeros((h + 1, w, 3) if "/images/" in entry else (h + 1, w), np.uint8)
    archive = fake_drive_zip(tmp_path / "DRIVE.zip", skip={entry},
                             extra={entry: png_bytes(wrong, "TIFF" if entry.endswith(".tif") else "GIF")})
    with pytest.raises(SkunetError) as err:
        read_archives("drive", [archive], native_size=FAKE_SIZE)
    assert str(err.value) == (f"DRIVE.zip:{entry}: {h + 1} x {w} pixels (H x W), expected {h} x {w}; "
                              "not the official drive release: replace the archive")


def test_the_native_sizes_are_the_official_ones():
    assert NATIVE_SIZE == {"drive": (584, 565), "chase": (960, 999)}  # (H, W)


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "name"), [("drive", "DRIVE.zip"), ("chase", "CHASEDB1.zip")])
def test_the_real_archives_have_the_native_size(mirror, dataset, name):
    raw = read_archives(dataset, [mirror / name])
    assert {s.label.shape for s in raw.samples.values()} == {NATIVE_SIZE[dataset]}
