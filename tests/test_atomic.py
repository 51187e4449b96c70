"""Atomic outputs: errors name the output, and a stage's outputs read back or say which stage to
re-run."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from skunet.atomic import atomic_dir, atomic_file, read_array, read_json
from skunet.errors import SkunetError


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
        assert str(err.value).endswith("re-run `dvc repro -f resize@drive` to write it again")
    with pytest.raises(SkunetError, match=r"x.npy: missing; run `dvc repro resize@drive` first$"):
        read_array(tmp_path / "x.npy", "resize@drive")
    assert read_json(tmp_path / "l.json", "s", kind=list) == ["drive"]

