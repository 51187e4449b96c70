"""One line for what goes wrong outside the project's control: a full disk, an unwritable output
location; nothing partial left behind."""

from __future__ import annotations

import errno
import resource

import pytest

from conftest import fake_raw, one_line_error, run_stage, write_params
from skunet.errors import os_error_line

RESIZE_32 = {"resize": {"drive": {"input_size": 32}}}


def _file_size_limit(limit: int):
    """A preexec_fn: files the stage writes stop at `limit` bytes, as on a full disk (Python
    ignores SIGXFSZ, so the write past the limit fails with EFBIG)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob(".*.tmp"))


@pytest.mark.parametrize(("code", "advice"), [
    (errno.ENOSPC, "free disk space"),
    (errno.EFBIG, "raise the file size limit"),
    (errno.EROFS, "make that location writable"),
    (errno.ENOTDIR, "a file is where a folder must be"),
])
def test_os_error_line_names_the_file_the_reason_and_what_to_do(code, advice):
    line = os_error_line(OSError(code, "the OS's reason", "data/resized/drive/meta.json"))
    assert line.startswith("data/resized/drive/meta.json: the OS's reason; ") and advice in line


def test_a_full_disk_in_a_stage_is_one_line_and_leaves_nothing(tmp_path):
    write_params(tmp_path, RESIZE_32)
    fake_raw(tmp_path)
    result = run_stage("resize.py", "drive", cwd=tmp_path, preexec_fn=_file_size_limit(4096))
    # numpy reports the short write without the OS's errno: the advice covers both causes
    one_line_error(result, "data/resized/drive/train_images.npy: ", "free space")
    assert not (tmp_path / "data" / "resized" / "drive").exists()
    assert _leftovers(tmp_path / "data") == []


def test_an_unwritable_output_location_is_one_line(tmp_path):
    write_params(tmp_path, RESIZE_32)
    fake_raw(tmp_path)
    (tmp_path / "data" / "resized").write_text("a file where the stage's output folder goes")
    result = run_stage("resize.py", "drive", cwd=tmp_path)
    one_line_error(result, "data/resized: File exists", "a file is where a folder must be")
    assert _leftovers(tmp_path / "data") == []

