"""End to end on the real archives (SKUNET_DATA_MIRROR): the data stages under DVC at paper size."""

from __future__ import annotations

import json
import os
import subprocess
import time

import albumentations as A
import cv2
import numpy as np
import pytest
import yaml

from conftest import project_copy
from skunet.config import deep_merge

pytestmark = pytest.mark.slow
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]


def dvc(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture
def workspace(tmp_path, mirror):
    """The tracked project files in a fresh git repository."""
    return project_copy(tmp_path / "work")


def test_data_stages_on_the_real_archives(workspace):
    result = dvc("repro", "augment@drive", "augment@chase", cwd=workspace)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for dataset, size in (("drive", 592), ("chase", 1008)):
        images = np.load(workspace / f"data/augmented/{dataset}/images.npy", mmap_mode="r")
        labels = np.load(workspace / f"data/augmented/{dataset}/labels.npy", mmap_mode="r")
        assert images.shape == (520, size, size, 3) and labels.shape == (520, size, size)
        assert set(np.unique(labels[::13])) == {0, 1}
        native = np.load(workspace / f"data/resized/{dataset}/test_labels_native.npy")
        assert native.shape == ((20, 584, 565) if dataset == "drive" else (8, 960, 999))
        libraries = json.loads((workspace / f"data/augmented/{dataset}/libraries.json").read_text())
        assert libraries == {"albumentations": A.__version__, "opencv": cv2.__version__, "numpy": np.__version__}
    status = dvc("status", "augment@drive", "augment@chase", cwd=workspace)
    assert "up to date" in status.stdout, status.stdout
    again = dvc("repro", "augment@drive", "augment@chase", cwd=workspace)
    assert "Running stage" not in again.stdout, again.stdout


def test_corrupted_real_archive_gives_a_checksum_error_and_no_output(workspace, mirror, tmp_path):
    bad_mirror = tmp_path / "bad_mirror"
    bad_mirror.mkdir()
    data = bytearray((mirror / "CHASEDB1.zip").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad_mirror / "CHASEDB1.zip").write_bytes(bytes(data))
    env = {**os.environ, "SKUNET_DATA_MIRROR": str(bad_mirror), "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(["dvc", "repro", "download@chase"], cwd=workspace, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "CHASEDB1.zip: checksum mismatch" in result.stderr + result.stdout
    assert not (workspace / "data" / "raw" / "chase").exists()


def test_queued_trainings_come_back_through_the_run_cache(workspace):
    """The README's scaling recipe at a tiny size: two trainings as parallel workers of DVC's
    experiment queue, then `dvc repro` takes both from the run cache instead of training again
    (DRIVE's two U-Nets: one dataset's data stages are enough)."""
    params = deep_merge(yaml.safe_load((workspace / "params.yaml").read_text()),
                        yaml.safe_load((workspace / "params.smoke.yaml").read_text()))
    params = deep_merge(params, {"train": {"common": {"epochs": 1, "max_train_samples": 8}}})
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data = dvc("repro", "augment@drive", cwd=workspace)
    assert data.returncode == 0, data.stderr[-2000:]
    subprocess.run([*GIT, "commit", "-qam", "tiny profile and data"], cwd=workspace, check=True)

    trainings = ("drive-unet", "drive-unet_dropblock")
    for training in trainings:
        queued = dvc("exp", "run", "--queue", "-n", f"q-{training}", f"train@{training}", cwd=workspace)
        assert queued.returncode == 0, queued.stderr[-2000:]
    try:
        assert dvc("queue", "start", "-j", "2", cwd=workspace).returncode == 0
        deadline = time.time() + 300
        while time.time() < deadline:
            status = dvc("queue", "status", cwd=workspace).stdout
            if status.count("Success") + status.count("Failed") >= 2:
                break
            time.sleep(2)
        assert status.count("Success") == 2, status
    finally:
        dvc("queue", "stop", "--kill", cwd=workspace)

    merged = dvc("repro", *(f"train@{t}" for t in trainings), cwd=workspace)
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert merged.stdout.count("is cached - skipping run") == 2, merged.stdout
    assert "Running stage 'train@" not in merged.stdout
    for model in ("unet", "unet_dropblock"):
        assert (workspace / "models" / "drive" / f"{model}.pt").exists()
