"""Shared fixtures: the repository root, the data mirror, small fake archives and raw data, and
running a stage."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

# The suite runs its tests in parallel (README: `python -m pytest -n auto`), a worker per CPU:
# tiny tensors gain nothing from intra-op threads, which would only spin against the other
# workers. Set before torch is imported, so that the stages the tests start inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import skunet
from skunet.config import deep_merge
from skunet.data.raw import NATIVE_SIZE, RawDataset, RawSample, write_raw

ROOT = Path(__file__).resolve().parents[1]

# Device-parametrized tests also run on CUDA where there is a GPU, and say why they are skipped
# where there is none. On a GPU machine, a quick check before a long run:
# `python -m pytest tests/test_models.py tests/test_training.py -k cuda`.
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]

# The paper's Tables 3 and 4 as docs/paper.md quotes them, typed here independently of
# published/paper.yaml, and the default tolerances: the reference the compare and report tests
# work against.
TOL = {"f1": 0.02, "accuracy": 0.005, "auc": 0.01}
REFERENCE = {
    "drive": {
        "unet": {"f1": 0.8120, "accuracy": 0.9682, "auc": 0.9813},
        "unet_dropblock": {"f1": 0.8174, "accuracy": 0.9687, "auc": 0.9851},
        "skunet": {"f1": 0.8291, "accuracy": 0.9699, "auc": 0.9874},
    },
    "chase": {
        "unet": {"f1": 0.7927, "accuracy": 0.9736, "auc": 0.9870},
        "unet_dropblock": {"f1": 0.7930, "accuracy": 0.9739, "auc": 0.9902},
        "skunet": {"f1": 0.8171, "accuracy": 0.9768, "auc": 0.9909},
    },
}


@pytest.fixture
def mirror() -> Path:
    """The folder holding the real archives (SKUNET_DATA_MIRROR); skip when unset."""
    value = os.environ.get("SKUNET_DATA_MIRROR")
    if not value:
        pytest.skip("SKUNET_DATA_MIRROR is not set: the real DRIVE.zip / CHASEDB1.zip are needed")
    path = Path(value)
    if not (path / "DRIVE.zip").is_file() or not (path / "CHASEDB1.zip").is_file():
        pytest.skip(f"SKUNET_DATA_MIRROR={value} does not hold DRIVE.zip and CHASEDB1.zip")
    return path


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


# (H, W) of the fake DRIVE archives: far below DRIVE's 584 x 565 to stay fast, so the readers are
# given it as the native size (`native_size=FAKE_SIZE`); a stage, which expects the real size, is
# given an archive of the real size.
FAKE_SIZE = (24, 20)


def fake_drive_zip(path: Path, size: tuple[int, int] = FAKE_SIZE, extra: dict[str, bytes] | None = None,
                   skip: set[str] = frozenset()) -> Path:
    """A DRIVE-shaped zip with 40 images, labels and masks (official names), tiny by default."""
    rng = np.random.default_rng(0)
    h, w = size
    with zipfile.ZipFile(path, "w") as zf:
        for n in range(1, 41):
            split = "test" if n <= 20 else "training"
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            label = (image[..., 1] > 128).astype(np.uint8) * 255
            mask = np.zeros((h, w), np.uint8)
            mask[2:-2, 2:-2] = 255
            entries = {
                f"DRIVE/{split}/images/{n:02d}_{split}.tif": png_bytes(image, "TIFF"),
                f"DRIVE/{split}/1st_manual/{n:02d}_manual1.gif": png_bytes(label, "GIF"),
                f"DRIVE/{split}/mask/{n:02d}_{split}_mask.gif": png_bytes(mask, "GIF"),
            }
            for name, data in entries.items():
                if name not in skip:
                    zf.writestr(name, data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def fake_raw(folder: Path, dataset: str = "drive", size: tuple[int, int] | None = None,
             train: tuple[str, ...] = ("21", "22"), test: tuple[str, ...] = ("01", "02")) -> Path:
    """`folder`/data/raw/<dataset> as the download stage writes it, for a few plain images of
    `size` (H, W; default the dataset's native size), quick to write and read at any size."""
    h, w = size or NATIVE_SIZE[dataset]
    samples = {}
    for n, i in enumerate((*train, *test)):
        label = np.zeros((h, w), bool)
        label[:, (n * 7) % w :: 9] = True  # vertical "vessels"
        image = np.where(label[..., None], 60, 180).astype(np.uint8).repeat(3, axis=2)
        fov = np.ones((h, w), bool)
        samples[i] = RawSample(image, label, fov, label_2nd=np.roll(label, 1, axis=1))  # a second tracing, one pixel off
    out = folder / "data" / "raw" / dataset
    write_raw(RawDataset(dataset, list(train), list(test), samples, "fake"), out)
    return out


def write_params(folder: Path, override: dict | None = None) -> Path:
    """`folder`/params.yaml: the project's params.yaml with `override` laid over it."""
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), override or {})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder / "params.yaml"


def one_line_error(result: subprocess.CompletedProcess, *parts: str) -> str:
    """The stage's error: exit status 2, no traceback, and one line (the last) starting with
    `error: ` and holding every one of `parts`; returns that line."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert errors == lines[-1:], result.stderr[-3000:]  # a message running on would end the output
    for part in parts:
        assert part in lines[-1], (part, lines[-1])
    return lines[-1]


def run_stage(script: str, *args: str, cwd: Path, env: dict | None = None,
              preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """Run a stage script from stages/ with `cwd` as the project folder (`preexec_fn`: run in
    the child before the stage starts, e.g. to set a resource limit)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, preexec_fn=preexec_fn)


def project_copy(path: Path) -> Path:
    """The project's tracked files, as the working tree has them, in a fresh git repository."""
    from skunet.cli import copy_tracked

    copy_tracked(ROOT, path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "project"], cwd=path, check=True)
    return path


# The multi-machine lease test takes about as long as a third of the rest together: it goes first,
# so that under `-n auto --dist worksteal` one worker starts on it at once while the others share
# out the rest.
FIRST = ("test_time_boxed_machines_then_take_give_the_metrics_of_one_uninterrupted_run",)


def pytest_configure(config: pytest.Config) -> None:
    """The suite tests this checkout's code: a virtual environment installed (`pip install -e`)
    from another clone imports that clone's, and would pass or fail for it, unsaid."""
    imported = Path(skunet.__file__).resolve().parent
    if imported != ROOT / "src" / "skunet":
        raise pytest.UsageError(f"skunet is imported from {imported}, not from this checkout's src/skunet:"
                                f" run `pip install -e .` in {ROOT} (or activate its own environment)")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: without it installed, pytest still runs
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one worker per CPU this process may run on. pytest-xdist itself counts physical
    cores through psutil: one on a VM whose two CPUs are a core's two threads, the host's many in
    a container limited to two. PYTEST_XDIST_AUTO_NUM_WORKERS still decides where set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.name not in FIRST)
