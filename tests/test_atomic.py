"""Atomic outputs: temporaries of killed runs are swept, errors name the output, and a stage's
outputs read back or say which stage to re-run."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from conftest import ROOT, write_params
from skunet.atomic import atomic_dir, atomic_file, read_array, read_json, reserved_array
from skunet.errors import SkunetError


def _stale(folder, final_name: str, as_dir: bool):
    """A temporary of `final_name` named as mkdtemp / mkstemp name it, left by a killed run."""
    make = tempfile.mkdtemp if as_dir else tempfile.mkstemp
    made = make(prefix=f".{final_name}.", suffix=".tmp", dir=folder)
    return folder / os.path.basename(made if as_dir else made[1])


@pytest.mark.parametrize("atomic", [atomic_dir, atomic_file])
def test_a_write_sweeps_the_stale_temporaries_of_its_output_only(tmp_path, atomic):
    stale = [_stale(tmp_path, "unet", as_dir=True), _stale(tmp_path, "unet", as_dir=False)]
    (stale[0] / "images.npy").write_bytes(b"half an array")
    others = [_stale(tmp_path, "unet_dropblock", as_dir=True), _stale(tmp_path, "unet.pt", as_dir=False),
              _stale(tmp_path, "skunet", as_dir=False)]
    mine = tmp_path / ".unet.tmp"  # not a name mkdtemp / mkstemp give: not ours to remove
    mine.write_text("someone's file")
    with atomic(tmp_path / "unet") as tmp:
        assert not any(path.exists() for path in stale)
        (tmp / "x" if atomic is atomic_dir else tmp).write_text("done")
    assert (tmp_path / "unet").exists()
    assert all(path.exists() for path in others) and mine.exists()


@pytest.mark.parametrize("atomic", [atomic_dir, atomic_file])
def test_a_failed_write_names_the_output_not_its_temporary(tmp_path, atomic):
    final = tmp_path / "out" / "images.npy"
    with pytest.raises(OSError) as err, atomic(final) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device")  # a write() names no file
    assert err.value.filename == str(final) and err.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as err, atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "missing" / "file").write_text("x")
    assert err.value.filename == str(tmp_path / "folder" / "missing" / "file")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"]


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_reserved_array_holds_its_disk_space_before_a_row_is_written(tmp_path):
    array = reserved_array(tmp_path / "a.npy", (4, 300, 300, 3))
    size = (tmp_path / "a.npy").stat().st_size
    assert size > array.nbytes and (tmp_path / "a.npy").stat().st_blocks * 512 >= size  # not sparse
    array[-1] = 7
    array.flush()
    del array
    loaded = np.load(tmp_path / "a.npy")
    assert loaded.shape == (4, 300, 300, 3) and loaded.dtype == np.uint8
    assert (loaded[-1] == 7).all() and not loaded[:-1].any()


def test_read_array_and_read_json_name_the_file_and_the_stage(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(1000))
    (tmp_path / "b.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:500])
    np.savez(tmp_path / "c.npz", x=np.arange(3))
    assert read_array(tmp_path / "a.npy", "resize@drive").tolist() == list(range(1000))
    cases = [
        (lambda: read_array(tmp_path / "b.npy", "resize@drive"), "b.npy: truncated or not a .npy array"),
        (lambda: read_array(tmp_path / "b.npy", "resize@drive", mmap_mode="r"), "b.npy: truncated"),
        (lambda: read_array(tmp_path / "c.npz", "resize@drive"), "c.npz: not a .npy array"),
    ]
    (tmp_path / "m.json").write_text('{"dataset": "drive", "train": [')
    (tmp_path / "l.json").write_text('["drive"]')
    (tmp_path / "k.json").write_text('{"dataset": "drive"}')
    cases += [
        (lambda: read_json(tmp_path / "m.json", "resize@drive"), "m.json: not valid JSON"),
        (lambda: read_json(tmp_path / "l.json", "resize@drive"), "l.json: not a JSON object"),
        (lambda: read_json(tmp_path / "k.json", "resize@drive", keys=("dataset", "test")), "k.json: no key 'test'"),
    ]
    for read, message in cases:
        with pytest.raises(SkunetError) as err:
            read()
        assert message in str(err.value) and "\n" not in str(err.value)
        assert str(err.value).endswith("re-run `dvc repro -f -s resize@drive` to write it again")
    with pytest.raises(SkunetError, match=r"x.npy: missing; run `dvc repro resize@drive` first$"):
        read_array(tmp_path / "x.npy", "resize@drive")
    assert read_json(tmp_path / "l.json", "s", kind=list) == ["drive"]


@pytest.mark.slow
def test_a_killed_augment_stage_leaves_no_temporary_after_the_next_run(tmp_path):
    """SIGKILL the augment stage while it writes (its temporary folder is there), run it again:
    the leftover is gone, the output is complete, other outputs' temporaries are kept."""
    write_params(tmp_path)
    resized = tmp_path / "data" / "resized" / "drive"
    resized.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(resized / "train_images.npy", rng.integers(0, 256, (20, 64, 64, 3), dtype=np.uint8))
    np.save(resized / "train_labels.npy", rng.integers(0, 2, (20, 64, 64), dtype=np.uint8))
    augmented = tmp_path / "data" / "augmented"
    augmented.mkdir()
    others = [_stale(augmented, "chase", as_dir=True), _stale(augmented, "drive_v2", as_dir=True)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(ROOT / "stages" / "augment.py"), "drive"]

    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(augmented.glob(".drive.*.tmp")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leaked = list(augmented.glob(".drive.*.tmp"))
    assert leaked and not (augmented / "drive").exists(), "the stage finished before it could be killed"

    subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True)
    assert not any(path.exists() for path in leaked)
    assert np.load(augmented / "drive" / "images.npy", mmap_mode="r").shape == (520, 64, 64, 3)
    assert len(json.loads((augmented / "drive" / "records.json").read_text())) == 520
    assert all(path.exists() for path in others)
