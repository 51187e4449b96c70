"""Write outputs to a temporary path and move them into place only when complete; read a stage's
outputs back, or say which stage to re-run.

A stage that fails (bad input, Ctrl-C, a crash) therefore leaves no partial output behind, and DVC
never sees half a folder. A stage killed outright (SIGKILL, a power cut) cannot clean up: the next
write of the same output sweeps what it left.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from numpy.lib.format import open_memmap

from skunet.errors import SkunetError, reason


def _temporary_names(final: Path) -> re.Pattern[str]:
    """The names mkdtemp / mkstemp give temporaries of `final` below: `.{name}.`, 8 random
    characters, `.tmp`; exact, so `unet` never matches `unet_dropblock`'s."""
    return re.compile(rf"\.{re.escape(final.name)}\.[a-z0-9_]{{8}}\.tmp")


def sweep_temporaries(final: Path) -> None:
    """Remove temporaries of `final` left by a killed run. One run writes an output at a time
    (DVC locks the repository), so any that exists when a write starts is stale."""
    names = _temporary_names(final)
    for path in final.parent.iterdir():
        if names.fullmatch(path.name):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _name_the_output(err: OSError, tmp: Path, final: Path) -> None:
    """Make an OSError name the output instead of its temporary, which is gone by the time the
    error is read; a failed write() names no file at all."""
    name = Path(err.filename) if isinstance(err.filename, (str, os.PathLike)) else tmp
    if name == tmp or tmp in name.parents:
        err.filename = str(final / name.relative_to(tmp))


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; outputs are ordinary folders
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        tmp.replace(final)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            _name_the_output(err, tmp, final)
        raise


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary file path beside `final`; on success it replaces `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(final)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o644)  # mkstemp makes it private; outputs are ordinary files
    try:
        yield tmp
        tmp.replace(final)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            _name_the_output(err, tmp, final)
        raise


# ---------------------------------------------------------------------------------------------
# Reading a stage's outputs back


def missing_output(path: Path, stage: str) -> SkunetError:
    """The error for an input that an earlier stage writes and that is not there."""
    return SkunetError(f"{path}: missing; run `dvc repro {stage}` first")


def damaged_output(path: Path, problem: str, stage: str) -> SkunetError:
    """The error for an input that is there but unusable (truncated, malformed, edited)."""
    return SkunetError(f"{path}: {problem}; re-run `dvc repro -f -s {stage}` to write it again")


def save_array(path: Path, array: np.ndarray) -> None:
    """`np.save`, with the file named in a failed write's error (numpy's names none)."""
    try:
        np.save(path, array)
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise


def reserved_array(path: Path, shape: Sequence[int], dtype: type = np.uint8) -> np.ndarray:
    """A new .npy file of `shape`, opened for writing through a memory map with its disk space
    reserved first. Without the reservation the file is sparse, and on a full disk the first page
    written past the free space kills the process with SIGBUS: no message, no clean-up. With it,
    a file that does not fit fails here, as an OSError naming it (ENOSPC)."""
    array = open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
    if hasattr(os, "posix_fallocate"):  # Linux and the BSDs; elsewhere the file stays sparse
        try:
            with open(path, "r+b") as fh:
                os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as err:
            err.filename = str(path)  # posix_fallocate names no file
            raise
    return array


def read_array(path: Path, stage: str, mmap_mode: str | None = None,
               shape: Sequence[int | str] | None = None) -> np.ndarray:
    """The .npy array `stage` wrote at `path` (memory-mapped with `mmap_mode`); missing,
    truncated, not an array or, given `shape` (``("N", "S", "S", 3)``: a name for any length, the
    same name for the same length), not a uint8 array of that shape: one line naming the file and
    the stage to re-run."""
    try:
        array = np.load(path, mmap_mode=mmap_mode)  # allow_pickle=False: plain arrays only
    except FileNotFoundError:
        raise missing_output(path, stage) from None
    except (ValueError, EOFError, pickle.UnpicklingError) as err:
        raise damaged_output(path, f"truncated or not a .npy array ({reason(err)})", stage) from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        raise damaged_output(path, "not a .npy array", stage)
    if shape is not None and not _has_shape(array, shape):
        raise damaged_output(path, f"expected a ({', '.join(map(str, shape))}) uint8 array, got {array.shape}"
                                   f" {array.dtype}", stage)
    return array


def _has_shape(array: np.ndarray, shape: Sequence[int | str]) -> bool:
    if array.dtype != np.uint8 or array.ndim != len(shape):
        return False
    named: dict[str, int] = {}
    for want, got in zip(shape, array.shape):
        if (isinstance(want, str) and named.setdefault(want, got) != got) or (isinstance(want, int) and want != got):
            return False
    return True


def read_json(path: Path, stage: str, kind: type = dict, keys: Sequence[str] = ()) -> Any:
    """The JSON `stage` wrote at `path`: a `kind` (dict or list), a dict with `keys`; missing or
    malformed: one line naming the file and the stage to re-run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise missing_output(path, stage) from None
    except ValueError as err:  # also a UnicodeDecodeError
        raise damaged_output(path, f"not valid JSON ({reason(err)})", stage) from None
    if not isinstance(data, kind):
        raise damaged_output(path, f"not a JSON {'object' if kind is dict else kind.__name__}", stage)
    absent = [key for key in keys if key not in data]
    if absent:
        raise damaged_output(path, f"no key {absent[0]!r}", stage)
    return data
