"""The paper run in pieces, on machines lent for a fixed time (a GPU lease, a spot instance, a
cluster job with a wall-clock limit), each piece worth keeping.

    skunet lease --budget 540 --out OUT [--take IN]     on the time-boxed machine
    skunet take IN                                       on any machine; then `dvc repro`

A lease, given its time budget and an output folder (and optionally the files a previous one
brought back):

1. first, within its first 50 s, writes what is worth keeping even if all that follows fails:
   ``manifest.json`` with the device, the torch / CUDA / driver versions and the versions that
   draw the data (NumPy, OpenCV, albumentations); on CUDA also a few timed fast-path training
   steps per model at paper size (the throughput benchmark's JSON), stopped where it runs past
   those 50 s (the manifest says so); then the ``-k cuda`` test cases, beside the first data
   stages (which use the CPU alone), ended by 120 s after the start, before the first training;
2. takes in the earlier pieces; in a fresh clone given none, goes on from what its commit
   records as finished from this very code and parameters (``reports/pieces.json``, dvc.lock,
   metrics/): the models and pieces of a run taken home are in no commit, and cannot travel with
   the archives and wheels;
3. runs the trainings in an order that completes whole comparisons early (DRIVE's three models
   first), each dataset's data stages (``dvc repro augment@...``) just before its first training,
   each new training only if an epoch of it fits in the time left by the epoch times measured
   so far, under a deadline (SKUNET_DEADLINE) at which the one in progress stops at an epoch
   boundary with its resume state saved; nothing runs past it (an epoch that would is dropped,
   data stages are stopped), so that packing always has its reserve;
4. packs everything another machine needs to go on into at most 8 files of at most 16 MiB: the
   finished trainings as DVC run-cache entries with their outputs (what `dvc repro` restores
   instead of training again), the resume state of a training in progress, and the manifest
   (what finished, what is in progress, epoch times, peak memory, device, versions).

``skunet take`` puts those into a checkout's DVC cache and ``.skunet-state/``; ``dvc repro`` then
takes each finished training from the run cache and evaluates it there, and the next lease goes on
where the last one stopped: given that folder with --take on a fresh machine, or with nothing in a
folder that a lease ran in or pieces were taken into (``.skunet-state/lease.json``: the next call
on a machine still up). The run cache restores a training only where the data stages drew the
same data (same NumPy and OpenCV): the manifest records who drew it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from ruamel.yaml.error import YAMLError

from skunet.atomic import atomic_file, sweep_temporaries
from skunet.config import DATASETS, MODELS, parse_yaml
from skunet.errors import SkunetError, Terminated, os_error_line, reason
from skunet.recorded import file_md5, lock_stages, other_inputs

log = logging.getLogger(__name__)

# Trainings in the order a lease runs them: DRIVE's three first, so that whole comparisons (a
# dataset's three models, the paper's ranking) complete early.
ORDER = tuple(f"{dataset}-{model}" for dataset in DATASETS for model in MODELS)
MANIFEST = "manifest.json"
# The manifest of the pieces taken home, committed with the results; a training it lists that was
# finished before the lease that carries it, and is neither trained nor packed there, is COMMITTED.
RECORD, COMMITTED = "reports/pieces.json", "committed"
# A training in either status is neither trained nor resumed by a lease.
DONE = ("finished", COMMITTED)
# A committed training whose predictions (DVC-cached, in no commit) are not in the checkout.
UNPREDICTED = "committed, its predictions not here"
PIECES = "pieces.tar"
# What a lease machine sends back: at most 8 files of at most 16 MiB. The manifest, the log and
# the benchmark take three; the packed pieces, split into parts, the rest.
MAX_FILES, MAX_FILE_BYTES = 8, 16 * 2**20
MAX_PARTS = MAX_FILES - 3
# The diagnostics and the benchmark end within FIRST_MINUTE_S of the lease's start: with
# scripts/lease.sh's install of the wheels before it (5 s for 68 wheels), the first minute. The
# `-k cuda` test cases then run beside the first data stages (CPU work) and end by TESTS_S, before
# the first training. On the H200, cold, the benchmark measured no model in 24 s and the tests
# none of their nine in 16 s, when the two shared the first 50 s one after the other.
FIRST_MINUTE_S, TESTS_S = 50.0, 120.0
# Kept back from the budget for packing and the transfer home.
RESERVE_S = 20.0
TRAIN_CMD = "python stages/train.py"


# ------------------------------------------------------------------------------- diagnostics
def _run_text(cmd: list[str], timeout: float) -> str | None:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def diagnostics() -> dict[str, Any]:
    """The machine: device, torch / CUDA / driver versions, and the library versions that draw the
    data (a training restored from the run cache needs the same data)."""
    import torch

    from skunet.baseline import environment

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)",
        "cuda": torch.version.cuda if cuda else None,
        "driver": _run_text(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], 20) if cuda else None,
        **environment(),
        # what the machine has, for the next wheelhouse (scripts/wheelhouse.sh's HAVE_FILE)
        "packages": [line for line in (_run_text([sys.executable, "-m", "pip", "freeze"], 60) or "").splitlines()
                     if re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", line)],  # no editable or local paths
    }


def _this_code(root: Path) -> dict[str, str]:
    """The checkout's code on the path, as its stages run it, whatever the environment has installed."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(root / "src"), os.environ.get("PYTHONPATH")]))}


def _benchmark(root: Path, out: Path, until: float) -> dict[str, Any]:
    """A few timed fast-path steps per model at paper size, ended by `until`, alone on the GPU (its
    figures are timings). Its epoch times decide what the lease starts, and it rewrites its JSON
    after each model, so that one stopped part-way keeps those it measured."""
    log_path, bench_path = out / "lease.log", out / "benchmark-drive.json"
    bench_path.unlink(missing_ok=True)  # an earlier lease's, in an --out given again
    bench = _run_logged([sys.executable, "benchmarks/train_throughput.py", "--dataset", "drive", "--fast-only",
                         "--steps", "3", "--out", str(bench_path)], root, log_path, max(1.0, until - time.time()),
                        _this_code(root))
    sweep_temporaries(bench_path)  # a write the stop cut short
    measured = [r["model"] for r in json.loads(bench_path.read_text())["models"]] if bench_path.is_file() else []
    if bench == 0:
        return {"benchmark": bench_path.name}
    if measured:
        return {"benchmark": f"{bench_path.name}: {', '.join(measured)} only ({_ended(bench)})"}
    return {"benchmark": f"no model measured ({_ended(bench)})"}


def _start_cuda_tests(root: Path, out: Path) -> tuple[subprocess.Popen, Path, float]:
    """The `-k cuda` test cases, started in the background (three xdist workers where the machine
    has xdist), so that they run beside the data stages, which use the CPU alone; their output
    goes to a file of their own, into lease.log when they end (:func:`_end_cuda_tests`)."""
    workers = ["-n", "3", "--dist", "worksteal"] if importlib.util.find_spec("xdist") else ["-p", "no:xdist"]
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *workers, "-k", "cuda",
           "tests/test_models.py", "tests/test_training.py"]
    text = root / ".skunet-state" / "cuda-tests.log"
    text.parent.mkdir(parents=True, exist_ok=True)
    with text.open("w") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, **_this_code(root)}, start_new_session=True)
    return proc, text, time.time()


def _end_cuda_tests(tests: tuple[subprocess.Popen, Path, float], out: Path, until: float) -> dict[str, Any]:
    """Wait for the test cases until `until`, stop them there, put their output into lease.log and
    count what ended."""
    proc, text, started = tests
    try:
        code = proc.wait(max(0.0, until - time.time()))
    except subprocess.TimeoutExpired:
        _stop(proc, signal.SIGTERM)
        code = 124
    with text.open("a") as fh:
        if code == 124:
            fh.write(f"(stopped after {time.time() - started:.0f} s)\n")
    output = text.read_text(errors="replace")
    with (out / "lease.log").open("a") as fh:
        fh.write(output)
    text.unlink(missing_ok=True)
    outcomes = _test_outcomes(output)
    return {"cuda_tests": outcomes if code == 0 else f"{outcomes}; {_ended(code)} (see lease.log)"}


_EARLIER = " in an earlier piece on "  # how a piece says it skipped what an earlier one ran


def _said_before(manifest: dict[str, Any], device: str, key: str, holds: Callable[[str], bool]) -> str | None:
    """What the latest earlier piece on the same device said under `key`, where that `holds` (a
    later call on that machine need not spend its time on it again). Pieces that skipped it
    themselves are passed over: the answer is what the piece that ran it said."""
    for piece in reversed(manifest["pieces"][:-1]):
        said = piece.get(key)
        if piece.get("device") == device and said and _EARLIER not in said and holds(said):
            return said
    return None


def _cuda_tests_ran(manifest: dict[str, Any], device: str) -> str | None:
    """What an earlier piece on the same device said of the test cases, where some ended there and
    none failed (a second try would wait as long and end where the first did)."""
    return _said_before(manifest, device, "cuda_tests", lambda said: not re.search(r"none ended|failed|error|exit", said))


def _benchmark_ran(manifest: dict[str, Any], device: str) -> str | None:
    """The benchmark an earlier piece on the same device ran to its end (every model measured): a
    later call on that machine spends its first minute on the trainings instead."""
    return _said_before(manifest, device, "benchmark", lambda said: said == "benchmark-drive.json")


def _ended(code: int) -> str:
    return "stopped at the end of its time" if code == 124 else f"exit {code}"


def _test_outcomes(text: str) -> str:
    """'7 passed, 1 failed' from pytest -v's lines (one per test as it ends, with or without xdist)."""
    found = {}
    for line in text.splitlines():
        outcome = re.search(r"\b(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", line)
        test = re.search(r"\S+::\S+", line)
        if outcome and test:
            found[test.group()] = outcome.group().lower()
    counts = collections.Counter(found.values())
    return ", ".join(f"{n} {word}" for word, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none ended"


def _run_logged(cmd: list[str], cwd: Path, log_path: Path | None, timeout: float | None,
                env: dict[str, str] | None = None, running: Path | None = None) -> int:
    """Run `cmd`, its output appended to `log_path` (None: to this terminal); the exit status
    (124 past `timeout`). It runs in a process group of its own, which Ctrl-C or SIGTERM here is
    passed on to (DVC alone would leave its stage running); the group is waited for, so that a
    training has stopped before its resume state is packed. `running`: a file that names this
    process and the group while it runs (:func:`_stop_orphans`)."""
    with (log_path.open("a") if log_path else contextlib.nullcontext()) as fh:
        if fh:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT if fh else None,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        if running is not None:
            _name_running(running, proc.pid)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _stop(proc, signal.SIGTERM)
            if fh:
                fh.write(f"(stopped after {timeout:.0f} s)\n")
            return 124
        except BaseException as err:  # KeyboardInterrupt, Terminated
            _stop(proc, signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM)
            raise


def _stop(proc: subprocess.Popen, sig: int, wait_s: float = 60.0) -> None:
    """Send `sig` to `proc`'s process group and wait until every process of it has ended (DVC may
    end before the stage it started); SIGKILL after `wait_s`."""
    _end_group(proc.pid, sig, lambda: proc.poll() is None or _group_running(proc.pid), wait_s)
    proc.wait()


def _end_group(pgid: int, sig: int, alive: Callable[[], bool], wait_s: float = 60.0) -> None:
    """Send `sig` to process group `pgid`, wait while `alive()`, and SIGKILL it after `wait_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    end = time.time() + wait_s
    while alive() and time.time() < end:
        time.sleep(0.2)
    if alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _running_path(root: Path) -> Path:
    """Names the lease running in the folder `root` and the process group of its stage."""
    return root / ".skunet-state" / "running.json"


def _name_running(running: Path, group: int | None) -> None:
    """Say in `running` that this lease runs here, with its stage's process group, if any."""
    running.parent.mkdir(parents=True, exist_ok=True)
    running.write_text(json.dumps({"lease": os.getpid(), "group": group}) + "\n")


def _unname_running(running: Path) -> None:
    """Remove `running` where it names this lease (never another's, started beside it)."""
    with contextlib.suppress(FileNotFoundError, ValueError, AttributeError):
        if json.loads(running.read_text()).get("lease") == os.getpid():
            running.unlink()


def _stop_orphans(root: Path) -> None:
    """A lease stopped outright (SIGKILL: a machine's time limit) leaves its stage running, which
    holds DVC's locks: stop that stage before a lease starts here. A lease still running in this
    folder is refused instead."""
    path = _running_path(root)
    try:
        info = json.loads(path.read_text())
        pid, group = int(info["lease"]), None if info["group"] is None else int(info["group"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):  # cut short as it was written: nothing to stop
        path.unlink(missing_ok=True)
        return
    _refuse_beside(root, pid)
    if group is not None and _group_running(group, cwd=root):
        log.info("stopping the stage that a lease stopped outright left running here (process group %d)", group)
        _end_group(group, signal.SIGTERM, lambda: _group_running(group))
    path.unlink(missing_ok=True)


def _refuse_beside(root: Path, pid: int) -> None:
    """One line where process `pid`, a lease other than this one, still runs in the folder `root`."""
    if pid != os.getpid() and _is_lease(pid):
        raise SkunetError(f"{root}: a lease runs in this folder (process {pid}); wait for it to end, or stop it,"
                          " then run this again")


def _refuse_beside_a_lease(root: Path) -> None:
    """`skunet take` beside a running lease would change the resume states and the run cache
    under it; a lease that is gone (killed outright) is no obstacle."""
    try:
        _refuse_beside(root, int(json.loads(_running_path(root).read_text())["lease"]))
    except (OSError, ValueError, KeyError, TypeError):  # none, or cut short as it was written
        return


def _is_lease(pid: int) -> bool:
    """Whether process `pid` runs and is a lease (not another that took its number since)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.is_file() or b"lease" in cmdline.read_bytes()


def _group_running(pgid: int, cwd: Path | None = None) -> bool:
    """Whether a process of group `pgid` is still running (one that has ended but is not yet
    reaped aside); with `cwd`, one running in that folder (not a group that took the number since)."""
    if not Path("/proc/self/stat").is_file():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            here = cwd is None or (stat.parent / "cwd").resolve() == cwd.resolve()
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z" and here:
            return True
    return False


# ----------------------------------------------------------------------------- the run cache
@functools.lru_cache(maxsize=1)
def _python_on_path() -> dict[str, str]:
    """dvc.yaml's commands call `python`; a machine with only `python3` gets a wrapper for this
    interpreter first on the PATH (a wrapper, since a symlink would step out of a virtual
    environment), removed when this process ends."""
    if shutil.which("python"):
        return {}
    folder = Path(tempfile.mkdtemp(prefix="skunet-python-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


def _dvc(root: Path, *args: str, log_path: Path | None, env: dict[str, str] | None = None,
         timeout: float | None = None, running: Path | None = None) -> int:
    return _run_logged([sys.executable, "-m", "dvc", *args], root, log_path, timeout,
                       {"DVC_NO_ANALYTICS": "1", **_python_on_path(), **(env or {})}, running)


def _cache_dir(root: Path) -> Path:
    """The checkout's DVC cache: the folder `dvc cache dir` set, if one was (a cache shared on a
    cluster), else .dvc/cache."""
    from dvc.config import Config

    configured = Config(dvc_dir=str(root / ".dvc"))["cache"].get("dir")
    return Path(configured) if configured else root / ".dvc" / "cache"


def _arcname(root: Path, path: Path) -> str:
    """A packed file's name in the pieces: .dvc/cache/... for the cache wherever it is, else its
    path in the checkout."""
    cache = _cache_dir(root)
    if cache in path.parents:
        return (Path(".dvc/cache") / path.relative_to(cache)).as_posix()
    return path.relative_to(root).as_posix()


def _target(root: Path, arcname: str) -> Path:
    """Where a packed file goes in the checkout at `root` (:func:`_arcname` reversed)."""
    if arcname.startswith(".dvc/cache/"):
        return _cache_dir(root) / arcname.removeprefix(".dvc/cache/")
    return root / arcname


def _training_runs(root: Path) -> dict[str, list[Path]]:
    """The run-cache entries of trainings, by training (`drive-unet`), newest last."""
    runs: dict[str, list[Path]] = {}
    for entry in sorted((_cache_dir(root) / "runs").glob("*/*/*"), key=lambda p: p.stat().st_mtime):
        try:
            cmd = parse_yaml(entry.read_text()).get("cmd", "")
        except (OSError, YAMLError, AttributeError):
            continue
        if cmd.startswith(TRAIN_CMD + " "):
            dataset, model = cmd.split()[2:4]
            runs.setdefault(f"{dataset}-{model}", []).append(entry)
    return runs


def _object(root: Path, md5: str) -> Path:
    """Where DVC's cache keeps the file of hash `md5`."""
    return _cache_dir(root) / "files" / "md5" / md5[:2] / md5[2:]


def _objects(root: Path, entry: Path) -> list[Path]:
    """The cache objects of a run-cache entry's outputs."""
    return [_object(root, out["md5"]) for out in parse_yaml(entry.read_text()).get("outs", [])]


# ------------------------------------------------------------------------------ the manifest
def _state_path(root: Path, training: str) -> Path:
    return root / ".skunet-state" / f"{training}.pt"


def _kept_path(root: Path) -> Path:
    """The manifest of the last lease that ran in the folder `root`, or of the last pieces taken
    into it: a later lease there without --take (a warm machine's next call) goes on from it; the
    finished trainings are in the folder's run cache, the resume state in .skunet-state/."""
    return root / ".skunet-state" / "lease.json"


def _keep(root: Path, manifest: dict[str, Any]) -> None:
    _dump(_kept_path(root), manifest)


def _read_kept(root: Path) -> dict[str, Any]:
    path = _kept_path(root)
    try:
        manifest = json.loads(path.read_text())
        problem = _manifest_problem(manifest)
    except (OSError, ValueError) as err:
        problem = f"not a lease's manifest ({reason(err)})"
    if problem:
        raise SkunetError(f"{path}: {problem}; remove it to start afresh, or give --take the folder the last lease"
                          " wrote")
    return manifest


def _kept_after(root: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """This folder's kept manifest where a later lease went on from `manifest`'s pieces (they are
    its first ones, and it has more): pieces older than the folder's, which must not overwrite
    its resume states and manifest. None otherwise (no kept manifest, the same pieces, or others)."""
    try:
        kept = _read_kept(root) if _kept_path(root).is_file() else None
    except SkunetError:  # damaged: the pieces taken now replace it
        return None
    n = len(manifest["pieces"])
    if kept is not None and len(kept["pieces"]) > n and kept["pieces"][:n] == manifest["pieces"]:
        return kept
    return None


def check_project(root: Path) -> None:
    """`root` must be this project (its pipeline's train stage) with its DVC folder, where the run
    cache goes: a copy made without hidden files lacks it."""
    try:
        stages = parse_yaml((root / "dvc.yaml").read_text()).get("stages", {})
    except (OSError, YAMLError, AttributeError):
        stages = {}
    if not isinstance(stages, dict) or not {"augment", "train"} <= set(stages):
        raise SkunetError(f"{root / 'dvc.yaml'}: not this project's pipeline (no augment and train stages); run it in"
                          " the project folder, a clone or a copy of it")
    if not (root / ".dvc").is_dir():
        raise SkunetError(f"{root / '.dvc'}: not there; copy the whole project folder, its hidden files (.dvc/,"
                          " .dvcignore) included")
    from skunet.config import load_params

    load_params(root / "params.yaml")  # a misspelled key or a YAML error: one line, before anything is written


def _resumed_history(root: Path, training: str) -> list[dict[str, float]] | None:
    """The epochs a training in progress has done, from its resume state; None where it has none."""
    from skunet.checkpoints import read_resume_state

    state = read_resume_state(_state_path(root, training))
    return None if state is None else state["history"]


def _history(root: Path, training: str) -> list[dict[str, float]]:
    """A training's epochs, from its resume state (in progress) or its log (finished)."""
    from skunet.checkpoints import read_log

    history = _resumed_history(root, training)
    if history is not None:
        return history
    dataset, model = training.split("-", 1)
    log_csv = root / "plots" / "train" / dataset / f"{model}.csv"
    return read_log(log_csv) if log_csv.is_file() else []


def _epoch_seconds(history: list[dict[str, float]]) -> list[float]:
    """Seconds per epoch of a training's history."""
    return [float(row["seconds"]) for row in history]


def _peak_mib(history: list[dict[str, float]]) -> float | None:
    """The peak memory a training's epochs recorded, MiB (None for a log without it)."""
    peaks = [float(row["peak_mib"]) for row in history if "peak_mib" in row]
    return max(peaks) if peaks else None


def _read_manifest(folder: Path, required: bool = False) -> dict[str, Any]:
    """The manifest a lease wrote into `folder`; an empty one where there is none (a new --out),
    unless `required` (the pieces are read by it)."""
    path = folder / MANIFEST
    if path.exists() and not path.is_file():
        raise SkunetError(f"{path}: not a file; bring back the files the lease wrote, unchanged")
    if not path.is_file():
        if required:
            raise SkunetError(f"{path}: missing (the pieces cannot be checked without it); bring back all of the"
                              " files the lease wrote, unchanged")
        return {"pieces": [], "trainings": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SkunetError(f"{path}: not readable as a lease's manifest ({reason(err)}); bring back the files"
                          " the lease wrote, unchanged") from None
    problem = _manifest_problem(data)
    if problem:
        raise SkunetError(f"{path}: {problem}; bring back the files the lease wrote, unchanged")
    return data


def _manifest_problem(data: Any) -> str | None:
    """What keeps `data` (a parsed manifest) from being one a lease writes, or None: each field
    that the lease and take read is checked for its type."""
    if not (isinstance(data, dict) and isinstance(data.get("pieces"), list) and isinstance(data.get("trainings"), dict)):
        return "not a lease's manifest (no list 'pieces' and object 'trainings')"
    for i, piece in enumerate(data["pieces"]):
        cut, digests = (piece.get("cut"), piece.get("sha256")) if isinstance(piece, dict) else (None, None)
        if (not isinstance(piece, dict) or not isinstance(piece.get("device", ""), str)
                or not (cut is None or isinstance(cut, dict) and cut.get("training") in ORDER
                        and _seconds(cut.get("seconds")))
                or not (digests is None or isinstance(digests, dict)
                        and all(isinstance(v, str) for v in digests.values()))):
            return f"'pieces[{i}]' is not as a lease writes it"
    for training, entry in data["trainings"].items():
        if (training not in ORDER or not isinstance(entry, dict) or not isinstance(entry.get("status"), str)
                or not isinstance(entry.get("epochs_done"), int) or not isinstance(entry.get("device", ""), str)
                or not isinstance(entry.get("epoch_seconds", []), list)
                or not all(_seconds(s) for s in entry.get("epoch_seconds", []))):
            return f"'trainings.{training}' is not as a lease writes it"
    return None


def _seconds(value: Any) -> bool:
    """Whether `value` is a number of seconds as a manifest writes one."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")


def _parts(folder: Path) -> list[Path]:
    """The pieces.tar.NN files a lease wrote into `folder`, in order; one line if there are none."""
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise SkunetError(f"{folder}: {what}; give the folder a lease wrote (skunet lease --out)")
    parts = sorted(folder.glob(f"{PIECES}.[0-9][0-9]"))
    if not parts:
        raise SkunetError(f"{folder}: no {PIECES}.NN files; give the folder a lease wrote (skunet lease --out; one"
                          " stopped outright, by SIGKILL, packed none: take the one before it)")
    return parts


# --------------------------------------------------------------------------------- packing
def _pack(root: Path, out: Path, finished: Iterable[str], in_progress: Iterable[str],
          manifest: dict[str, Any] | None = None) -> dict[str, str]:
    """Tar the finished trainings' run-cache entries and objects and the resume states of those
    in progress into `out`/pieces.tar.NN parts of at most MAX_FILE_BYTES; the parts' sha256, by
    name. With `manifest`, its last piece records them, and it goes into `out` with the parts."""
    runs, seen = _training_runs(root), {}
    members: list[Path] = []
    for training in finished:
        # the run of this folder's code and parameters, which `dvc repro` here restores (not the
        # newest, which may be of parameters edited and edited back since)
        entry = _run_here(root, runs.get(training, []), seen)[0] or next(reversed(runs.get(training, [])), None)
        if entry is not None:
            members += [entry, *_objects(root, entry)]
    members += [_state_path(root, t) for t in in_progress if _state_path(root, t).is_file()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in members:
            tar.add(path, arcname=_arcname(root, path))
    data = buffer.getvalue()
    parts = [data[i : i + MAX_FILE_BYTES] for i in range(0, len(data), MAX_FILE_BYTES)] or [data]
    if len(parts) > MAX_PARTS:
        raise SkunetError(f"{out}: the pieces take {len(data) / 2**20:.1f} MiB, more than {MAX_PARTS} files of"
                          f" {MAX_FILE_BYTES // 2**20} MiB; bring back fewer trainings per lease")
    digests = {f"{PIECES}.{i:02d}": hashlib.sha256(part).hexdigest() for i, part in enumerate(parts)}
    _swap_in(out, dict(zip(digests, parts)), manifest, digests)
    return digests


def _swap_in(out: Path, parts: dict[str, bytes], manifest: dict[str, Any] | None, digests: dict[str, str]) -> None:
    """Write the parts (and the manifest that records them) beside those already in `out`, and
    move them into place only once all are whole: a full disk half-way leaves an earlier lease's
    parts and manifest as they were, still a folder `skunet take` takes. The moves need no space."""
    for stale in out.glob(f".{PIECES}.[0-9][0-9].tmp"):  # left by a lease stopped outright as it packed
        stale.unlink()
    written: list[Path] = []
    try:
        for name, part in parts.items():
            written.append(out / f".{name}.tmp")
            _write_naming(written[-1], part, out / name)
        if manifest is not None:
            manifest["pieces"][-1].update(sha256=digests, files=list(digests))
            written.append(out / f".{MANIFEST}.tmp")
            _write_naming(written[-1], (json.dumps(manifest, indent=1) + "\n").encode(), out / MANIFEST)
    except BaseException:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        if manifest is not None:
            manifest["pieces"][-1].update(sha256=None, files=[])
        raise
    for tmp in written:
        tmp.replace(out / tmp.name[1:].removesuffix(".tmp"))
    for stale in out.glob(f"{PIECES}.[0-9][0-9]"):  # an earlier lease's parts beyond this one's
        if stale.name not in parts:
            stale.unlink()


def _write_naming(tmp: Path, data: bytes, final: Path) -> None:
    """Write `data` to `tmp`; an OSError (a full disk) names `final`, not an output unnamed."""
    try:
        tmp.write_bytes(data)
    except OSError as err:
        err.filename = str(final)
        raise


def take(folder: Path, root: Path) -> dict[str, Any]:
    """Put the pieces a lease brought back (`folder`) into the checkout at `root`: run-cache entries
    and objects into .dvc/cache, a resume state into .skunet-state; returns the manifest (the
    next lease's starting point, or, at home, :func:`keep_manifest`'s). Everything is checked
    before anything is written: each part against the sha256 the manifest records, each cache
    object against its md5, and each training the manifest calls finished against a run of it."""
    parts = _parts(folder)
    manifest = _read_manifest(folder, required=True)
    _refuse_beside_a_lease(root)
    newer = _kept_after(root, manifest)
    if newer is not None:
        raise SkunetError(f"{folder}: older pieces than this checkout's (its {len(manifest['pieces'])} are the first of"
                          f" the {len(newer['pieces'])} in {_kept_path(root).relative_to(root)}, which a later lease"
                          " went on from); take the newest folder, or take these into a fresh clone")
    data = _checked_parts(folder, parts, manifest)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            files, runs, objects = _checked_members(folder, tar)
    except (tarfile.TarError, EOFError) as err:
        raise SkunetError(f"{folder}: the {PIECES} parts are incomplete or damaged ({reason(err)}); bring back all"
                          " of them, unchanged") from None
    _check_finished(folder, root, manifest, runs, objects)
    _say_if_another_chain(folder, root, manifest)
    seen: dict[tuple[str, str], Any] = {}
    for training in ORDER:
        name = f".skunet-state/{training}.pt"
        if _finished_since(root, training, manifest, seen) or (
                name in files and not _states_to_take(folder, root, training, files[name], manifest)):
            files.pop(name, None)
    for name, content in files.items():  # written by us, each to a path of our making: no tar extraction
        target = _target(root, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as tmp:
            tmp.write_bytes(content)
    for training, entry in manifest["trainings"].items():
        if entry["status"] == "finished":
            _state_path(root, training).unlink(missing_ok=True)  # done there: nothing to resume
    _keep(root, manifest)
    return manifest


def _say_if_another_chain(folder: Path, root: Path, manifest: dict[str, Any]) -> None:
    """One line where the pieces do not go on from those this checkout took or packed before
    (another lease's first piece): a mix-up, most likely; they are taken all the same."""
    try:
        kept = _read_kept(root) if _kept_path(root).is_file() else None
    except SkunetError:  # damaged: the pieces taken now replace it
        return
    if kept and kept["pieces"] and manifest["pieces"] and kept["pieces"][0] != manifest["pieces"][0]:
        log.info("%s: these pieces do not continue the ones taken here (another lease's first piece than %s's);"
                 " taken all the same", folder, _kept_path(root).relative_to(root))


def _lock(root: Path, seen: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """This checkout's dvc.lock stages, read once into `seen` for all the trainings asked about (a
    damaged dvc.lock: one line)."""
    if ("lock", "dvc.lock") not in seen:
        seen["lock", "dvc.lock"] = lock_stages(root)
    return seen["lock", "dvc.lock"]


def _finished_since(root: Path, training: str, manifest: dict[str, Any], seen: dict[tuple[str, str], Any]) -> bool:
    """Whether `training`, in progress in the pieces, finished in this checkout since (dvc.lock
    records it from this checkout's code and parameters, its model in place as recorded): its
    resume state among the pieces is older than that, and is left out. The manifest says finished.
    `seen`: what was read of this checkout so far (dvc.lock, the inputs' hashes), kept between calls."""
    entry = manifest["trainings"].get(training)
    if entry is None or entry["status"] in DONE:
        return False
    lock = _lock(root, seen).get(f"train@{training}")
    try:
        outs = lock["outs"]
        if not outs or any(file_md5(root / out["path"]) != out["md5"] for out in outs):
            return False
    except (AttributeError, KeyError, TypeError):  # no run of it
        return False
    if other_inputs(root, lock, seen):
        return False
    _record(root, manifest, training, "finished", entry.get("device", "unknown"))
    log.info("%s: finished in this checkout since (dvc.lock); the pieces' resume state of it (%d epoch%s) left out",
             training, entry["epochs_done"], "" if entry["epochs_done"] == 1 else "s")
    return True


def _epochs_of(state_bytes: bytes, where: Path) -> int:
    """The epochs a resume state holds (its bytes); SkunetError where it is damaged."""
    from skunet.checkpoints import read_resume_state

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / where.name
        path.write_bytes(state_bytes)
        try:
            return len(read_resume_state(path)["history"])
        except SkunetError as err:
            raise SkunetError(str(err).replace(str(path), str(where))) from None


def _states_to_take(folder: Path, root: Path, training: str, content: bytes, manifest: dict[str, Any]) -> bool:
    """Whether the pieces' resume state of `training` goes into this checkout: not one that is
    damaged (its training starts over: the manifest forgets it), nor one older than this
    checkout's own (a folder taken again after a training went on here)."""
    target = _state_path(root, training)
    try:
        packed = _epochs_of(content, folder / f"{PIECES}: .skunet-state/{training}.pt")
    except SkunetError as err:
        log.info("%s: its resume state among the pieces is damaged (%s): left out, the training starts over",
                 training, reason(err).split("; ")[0])
        manifest["trainings"].pop(training, None)
        return False
    if target.is_file():
        try:
            here = _epochs_of(target.read_bytes(), target)
        except SkunetError:
            here = -1  # damaged here: the pieces' one replaces it
        if here > packed:
            log.info("%s: this checkout's resume state is further on (%d epochs, the pieces' %d): kept", training,
                     here, packed)
            if training in manifest["trainings"]:
                manifest["trainings"][training]["epochs_done"] = here
            return False
    return True


def _checked_parts(folder: Path, parts: list[Path], manifest: dict[str, Any]) -> bytes:
    """The parts joined, after checking them against the last piece's record of them (a lease
    from before the record is taken as it is; its objects are still checked)."""
    piece = manifest["pieces"][-1] if manifest["pieces"] else {}
    digests = piece.get("sha256")
    if digests is None and ("sha256" in piece or any("sha256" in p for p in manifest["pieces"])):
        raise SkunetError(f"{folder}: its last lease packed nothing (stopped outright, or its packing failed: see its"
                          " lease.log), so its"
                          f" {PIECES} parts are an earlier lease's, which its manifest does not record; run the lease"
                          " again in the folder it ran in (it goes on from there), or take the folder before it")
    if not isinstance(digests, dict):  # a lease from before the record: its objects are still checked
        return b"".join(part.read_bytes() for part in parts)
    names = [part.name for part in parts]
    for name in digests:
        if name not in names:
            raise SkunetError(f"{folder / name}: missing; bring back all of the files the lease wrote, unchanged")
    chunks = []
    for part in parts:
        if part.name not in digests:
            raise SkunetError(f"{part}: not a part of this lease's pieces (its manifest lists {', '.join(digests)});"
                              " remove it, or bring back the folder the lease wrote")
        chunk = part.read_bytes()
        if hashlib.sha256(chunk).hexdigest() != digests[part.name]:
            raise SkunetError(f"{part}: damaged or cut short (its sha256 is not the one the manifest records);"
                              " bring it back again, unchanged")
        chunks.append(chunk)
    return b"".join(chunks)


def _checked_members(folder: Path, tar: tarfile.TarFile
                     ) -> tuple[dict[str, bytes], dict[str, dict[str, Any]], set[str]]:
    """Check every member of the pieces: a regular file under the two folders a lease packs, with
    nothing that climbs out, and a cache object whose bytes have the md5 it is named by (tar keeps
    no checksum of its data). Returns the members' contents by name, the trainings' run-cache
    entries among them by training, and the md5s of the objects."""
    files: dict[str, bytes] = {}
    runs: dict[str, dict[str, Any]] = {}
    objects: set[str] = set()
    for member in tar.getmembers():
        name = posixpath.normpath(member.name)
        if (not member.isfile() or name != member.name or name.startswith("/")
                or not name.startswith((".dvc/cache/", ".skunet-state/"))):
            raise SkunetError(f"{folder}: {member.name} is not a piece of a lease; refusing the folder")
        content = files[name] = tar.extractfile(member).read()
        if name.startswith(".dvc/cache/files/md5/"):
            md5 = "".join(name.split("/")[-2:])
            if hashlib.md5(content).hexdigest() != md5:
                raise SkunetError(f"{folder}: {name} is damaged (its bytes do not have the md5 it is named by);"
                                  " bring back the files the lease wrote, unchanged")
            objects.add(md5)
        elif name.startswith(".dvc/cache/runs/"):
            try:
                entry = parse_yaml(content)
                cmd = entry.get("cmd", "") if isinstance(entry, dict) else ""
            except YAMLError:
                cmd = ""
            if cmd.startswith(TRAIN_CMD + " "):
                runs["-".join(cmd.split()[2:4])] = entry
    return files, runs, objects


def _check_finished(folder: Path, root: Path, manifest: dict[str, Any], runs: dict[str, dict[str, Any]],
                    objects: set[str]) -> None:
    """Each training the manifest calls finished has a run among the pieces (or already in this
    checkout's cache) whose outputs are there too: else `dvc repro` would train it again, unsaid."""
    known = _training_runs(root)
    for training, entry in manifest["trainings"].items():
        if entry["status"] != "finished":
            continue
        run = runs.get(training) or (parse_yaml(known[training][-1].read_text()) if known.get(training) else None)
        outs = [] if run is None else [out.get("md5", "") for out in run.get("outs", [])]
        if run is None or not outs or not all(md5 in objects or _object(root, md5).is_file() for md5 in outs):
            raise SkunetError(f"{folder}: its manifest says {training} finished, but the pieces hold no run of it;"
                              " bring back all of the files the lease wrote, unchanged")


def _data_dep(entry: dict[str, Any], dataset: str) -> str | None:
    """The md5 of the augmented data a training's run-cache (or lock) entry was trained on."""
    return next((dep.get("md5") for dep in entry.get("deps", []) if dep["path"] == f"data/augmented/{dataset}"), None)


def _run_here(root: Path, runs: list[Path], seen: dict[tuple[str, str], Any]) -> tuple[Path | None, list[str]]:
    """The newest of a training's run-cache entries `runs` made from this folder's code and
    parameters, with no differences; else None and what the newest differs in."""
    newest: list[str] = []
    for entry in reversed(runs):  # the newest first
        differ = other_inputs(root, parse_yaml(entry.read_text()), seen)
        if not differ:
            return entry, []
        newest = newest or differ
    return None, newest or ["no run of it in this folder's DVC cache"]


def _forget_what_no_run_restores(root: Path, manifest: dict[str, Any],
                                 seen: dict[tuple[str, str], Any] | None = None) -> None:
    """A training the manifest calls finished, but of which this folder's run cache holds no run
    made from this folder's code and parameters (params.yaml edited since, another commit, the
    cache emptied), is trained again: it is taken out of the manifest's trainings. So is one it
    calls committed whose record in this checkout no longer holds (:func:`_not_committed`)."""
    runs, seen = _training_runs(root), {} if seen is None else seen
    for training in ORDER:
        status = manifest["trainings"].get(training, {}).get("status")
        if status == COMMITTED:
            why = _not_committed(root, training, seen)
            if why:
                log.info("%s: %s: trained again", training, why)
                del manifest["trainings"][training]
        if status != "finished":
            continue
        _, differ = _run_here(root, runs.get(training, []), seen)
        if differ:
            log.info("%s: finished before, from other inputs than this folder's (%s): trained again here", training,
                     ", ".join(differ))
            del manifest["trainings"][training]


# ------------------------------------------------------------------ trainings committed before
# A run in pieces taken home and committed: its trainings' models and pieces are in no commit (they
# cannot travel to the next machine beside the archives and wheels), but dvc.lock, the metrics and
# this manifest are. A lease in a fresh clone of that commit goes on from them.
def _not_committed(root: Path, training: str, seen: dict[tuple[str, str], Any]) -> str | None:
    """Why this checkout's committed record does not stand for `training` (None where it does):
    dvc.lock's train entry must be of this checkout's train stage (dvc.yaml's command, dependencies
    and parameters) and its code and parameters (all but the augmented data, which the training
    machine's own libraries drew), and the evaluate entry must be of that model, with the metrics
    file byte for byte what it wrote. Else a committed result would stand for code it was not made
    from. `seen`: what was read of this checkout so far (dvc.lock, the inputs' hashes)."""
    dataset, model = training.split("-", 1)
    stages = _lock(root, seen)
    train, evaluate = stages.get(f"train@{training}"), stages.get(f"evaluate@{training}")
    if not isinstance(train, dict):
        return f"listed finished in {RECORD}, but dvc.lock records no train@{training}"
    stage = [name for name, here, there in zip(("command", "dependencies", "parameters"),
                                                _declared(root, training, seen), _recorded(train)) if here != there]
    if stage:
        return f"committed (dvc.lock), but by another train stage than this checkout's dvc.yaml ({', '.join(stage)})"
    differ = other_inputs(root, train, seen)
    if differ:
        params = [d for d in differ if d.startswith("params.yaml:")]
        what = ("code and parameters" if params and len(params) < len(differ)
                else "parameters" if params else "code")
        return f"committed (dvc.lock), but made from other {what} than this checkout's ({', '.join(differ)})"
    if not isinstance(evaluate, dict):
        return f"committed (dvc.lock), but dvc.lock records no evaluate@{training}"
    weights = f"models/{dataset}/{model}.pt"
    md5_of = lambda entries, path: next((e.get("md5") for e in entries or [] if e.get("path") == path), None)
    made = md5_of(train.get("outs"), weights)
    if made is None or md5_of(evaluate.get("deps"), weights) != made:
        return f"committed (dvc.lock), but evaluate@{training} evaluated another {weights} than train@{training} made"
    metrics = f"metrics/{dataset}/{model}.json"
    recorded = md5_of(evaluate.get("outs"), metrics)
    if recorded is None or file_md5(root / metrics) != recorded:
        what = "missing" if not (root / metrics).is_file() else "not the file dvc.lock records for it"
        return f"committed (dvc.lock), but {metrics} is {what} (evaluate@{training})"
    return None


def _declared(root: Path, training: str, seen: dict[tuple[str, str], Any]) -> tuple[str, set[str], set[str]]:
    """The command, dependencies and parameters dvc.yaml at `root` gives `training`'s train stage."""
    dataset, model = training.split("-", 1)
    if ("yaml", "dvc.yaml") not in seen:
        seen["yaml", "dvc.yaml"] = parse_yaml((root / "dvc.yaml").read_text())["stages"]["train"]
    stage = seen["yaml", "dvc.yaml"]
    fill = lambda text: str(text).replace("${item.dataset}", dataset).replace("${item.model}", model)
    return (fill(stage.get("cmd")), {fill(dep) for dep in stage.get("deps") or []},
            {fill(name) for name in stage.get("params") or []})


def _recorded(entry: dict[str, Any]) -> tuple[str, set[str], set[str]]:
    """The command, dependencies and parameters of a stage's run as dvc.lock records them."""
    params = entry.get("params") or {}
    return (str(entry.get("cmd")), {str(dep.get("path")) for dep in entry.get("deps") or []},
            {str(key) for values in params.values() if isinstance(values, dict) for key in values})


def _committed_record(root: Path, seen: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """A lease's start in a folder where none ran and none was given --take (a fresh clone): the
    trainings that the committed record (``reports/pieces.json``, dvc.lock, metrics/) holds as
    finished from this checkout's code and parameters, each said in a line, as does each it
    lists that is trained again. Their pieces come after the record's."""
    empty: dict[str, Any] = {"pieces": [], "trainings": {}}
    path = root / RECORD
    if not path.is_file():
        return empty
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        problem = _manifest_problem(record)
    except (OSError, ValueError) as err:
        problem = f"not a lease's manifest ({reason(err)})"
    if problem:
        log.info("%s: %s; no training is taken as committed (restore it with `git checkout %s`)", RECORD, problem,
                 RECORD)
        return empty
    committed = {}
    for training in ORDER:
        entry = record["trainings"].get(training, {})
        if entry.get("status") not in DONE:
            continue
        why = _not_committed(root, training, seen)
        if why:
            log.info("%s: %s: trained again", training, why)
            continue
        dataset, model = training.split("-", 1)
        log.info("%s: finished and committed in this checkout (dvc.lock, metrics/%s/%s.json): not trained again",
                 training, dataset, model)
        committed[training] = {**entry, "status": COMMITTED}
    return {"pieces": record["pieces"], "trainings": committed} if committed else empty


def adopt(root: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """At home, after :func:`take`: draw this checkout's data (``dvc repro augment@...``) and, for
    each finished training, see whether it was trained on the same data. Where it was, ``dvc
    repro`` restores it from the run cache. Where it was not (another NumPy or OpenCV drew other
    augmentations), the training machine's lock entry goes into dvc.lock and its outputs are put
    in place from the cache, so that ``dvc repro -s evaluate@...`` evaluates that very model here
    while ``dvc status`` keeps saying its data differ. Returns, by training, "run cache", "other
    data" or "other code: <what differs>" (trained from other code or parameters: left alone), for
    a training in progress whose resume state this checkout would not resume (it would start over)
    "other code", "other parameters" or "other code and parameters", and for one the lease took
    as committed whose record this checkout does not hold "not committed here: <why>", or
    UNPREDICTED where it does but lacks its predictions (the record's dvc.lock entries and metrics
    are left alone either way)."""
    from skunet.checkpoints import dvc_data_md5
    from skunet.data.augment import library_versions

    how = _states_of_other_inputs(root, manifest)
    seen: dict[tuple[str, str], Any] = {}  # this checkout's inputs' hashes, read once
    for training in ORDER:
        if manifest["trainings"].get(training, {}).get("status") == COMMITTED:
            why = _not_committed(root, training, seen)
            if why:
                how[training] = f"not committed here: {why}"
            elif not (root / "predictions" / training.replace("-", "/", 1)).is_dir():
                how[training] = UNPREDICTED  # in a fresh clone: the compare stage reads them
    runs = _training_runs(root)
    finished = [t for t in ORDER if manifest["trainings"].get(t, {}).get("status") == "finished" and runs.get(t)]
    datasets = sorted({t.split("-", 1)[0] for t in finished}, key=DATASETS.index)
    if not datasets:
        return how
    log.info("drawing this checkout's data (dvc repro %s), to see whether the trainings saw the same",
             " ".join(f"augment@{d}" for d in datasets))
    code = _dvc(root, "repro", "--quiet", *(f"augment@{d}" for d in datasets), log_path=None)
    if code != 0:
        raise SkunetError(f"dvc repro {' '.join(f'augment@{d}' for d in datasets)} failed (exit {code}); the"
                          " pieces are in the DVC cache: mend the data stages and run `skunet take` again")
    lock_path = root / "dvc.lock"
    lock = parse_yaml(lock_path.read_text())
    for training in finished:
        dataset = training.split("-", 1)[0]
        entry = parse_yaml(runs[training][-1].read_text())
        differ = other_inputs(root, entry, seen)
        if differ:
            how[training] = "other code: " + ", ".join(differ)
            continue
        if _data_dep(entry, dataset) == dvc_data_md5(dataset, lock_path):
            how[training] = "run cache"
            continue
        if _drawing_versions(manifest, training) == library_versions():  # the same libraries drew other data
            how[training] = "other code: the data stages' inputs (params.yaml resize or augment, or their code)"
            continue
        how[training] = "other data"
        lock["stages"][f"train@{training}"] = {k: entry[k] for k in ("cmd", "deps", "params", "outs") if k in entry}
        for out in entry["outs"]:
            with atomic_file(root / out["path"]) as tmp:
                shutil.copyfile(_object(root, out["md5"]), tmp)
    if "other data" in how.values():
        with atomic_file(lock_path) as tmp:
            tmp.write_text(yaml.safe_dump(lock, sort_keys=False))
    return how


def _states_of_other_inputs(root: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """By training in progress whose resume state this checkout would not resume, what differs:
    "other code" (the train stage's, :func:`skunet.training.stage_code`), "other parameters"
    (its model's and training's in params.yaml) or both. Such a training starts over here."""
    from skunet.checkpoints import read_resume_state
    from skunet.config import load_params, model_config
    from skunet.training import params_fingerprint, stage_code, train_config

    in_progress = [t for t in ORDER if _state_path(root, t).is_file()
                   and manifest["trainings"].get(t, {}).get("status") not in (None, *DONE)]
    if not in_progress:
        return {}
    code, params = stage_code(root), load_params(root / "params.yaml")
    other: dict[str, str] = {}
    for training in in_progress:
        dataset, model = training.split("-", 1)
        state = read_resume_state(_state_path(root, training)) or {}
        differ = []
        if state.get("code") != code:
            differ.append("code")
        if state.get("params") != params_fingerprint(model_config(params, dataset, model),
                                                     train_config(params, dataset, model)):
            differ.append("parameters")
        if differ:
            other[training] = "other " + " and ".join(differ)
    return other


def keep_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """The manifest of the pieces taken home, as reports/pieces.json, to commit with the results."""
    return _dump(root / RECORD, manifest)


def _dump(target: Path, manifest: dict[str, Any]) -> Path:
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return target


# ------------------------------------------------------------------------------- the lease
def _epoch_estimate(root: Path, out: Path, training: str, manifest: dict[str, Any]) -> float | None:
    """Seconds one epoch of `training` takes here: its own epochs so far (its resume state, or the
    pieces' manifest), else the longer of the benchmark's fast-path epoch (DRIVE, scaled by the
    pixel count for CHASE_DB1) and the time an earlier lease on this device ran it before its
    first epoch was cut (no shorter time can hold that epoch), else unknown. A training log in
    the checkout is not its own: a training still to do here has one only from another run (a
    committed result of another profile or code, on another device)."""
    known = (_epoch_seconds(_resumed_history(root, training) or [])
             or manifest["trainings"].get(training, {}).get("epoch_seconds", []))
    if known:
        return max(known)
    here = manifest["pieces"][-1].get("device") if manifest["pieces"] else None
    bounds = [float(p["cut"]["seconds"]) for p in manifest["pieces"][:-1]
              if isinstance(p.get("cut"), dict) and p["cut"].get("training") == training and p.get("device") == here]
    bench = out / "benchmark-drive.json"
    if bench.is_file():
        from skunet.config import load_params

        dataset, model = training.split("-", 1)
        rows = {r["model"]: r for r in json.loads(bench.read_text())["models"]}
        sizes = {d: load_params(root / "params.yaml")["resize"][d]["input_size"] for d in DATASETS}
        if model in rows:
            bounds.append(rows[model]["epoch_fast_s"] * (sizes[dataset] / sizes["drive"]) ** 2)
    return max(bounds) if bounds else None


def _fits(root: Path, out: Path, training: str, manifest: dict[str, Any], deadline: float) -> bool:
    """Whether an epoch of `training` fits in the time left (an unknown epoch time is tried);
    where not, says so."""
    left, epoch_s = deadline - time.time(), _epoch_estimate(root, out, training, manifest)
    if left <= 0:
        log.info("%s not started: the time is up", training)
        return False
    if epoch_s is not None and epoch_s > left:
        log.info("%s not started: %.0f s left, and an epoch of it takes %.0f s", training, left, epoch_s)
        return False
    return True


def _stopped_for_time(log_path: Path, training: str) -> bool:
    """Whether the train stage said it stopped at the deadline (DVC reports any failed stage with
    the same exit status, so the stage's own line tells)."""
    dataset, model = training.split("-", 1)
    return f"out of time: {dataset}/{model} stopped " in log_path.read_text()


def lease(root: Path, budget_s: float, out: Path, takes: list[Path], reserve_s: float = RESERVE_S) -> dict[str, Any]:
    """Run as much of the paper profile as `budget_s` allows; write the pieces into `out`. A
    stage that fails, or an error here, still packs what finished (the piece's "error" says what
    failed; an error is raised again once packed), as do Ctrl-C and SIGTERM."""
    start = time.time()
    deadline = start + budget_s - reserve_s
    with _signals_held():  # a signal cut into torch's import would leave its exit hooks printing
        import torch  # noqa: F401
    manifest: dict[str, Any] = {"pieces": [], "trainings": {}}
    earlier = _check_out(out)
    taken = [_read_manifest(folder) for folder in takes]  # first: a wrong --take is said before anything is written
    _stop_orphans(root)
    for folder, manifest_there in zip(takes, taken):
        newer = _kept_after(root, manifest_there) if manifest_there["pieces"] else None
        if newer is not None:  # the same command again after a stop, say: its resume states are older
            log.info("%s: its pieces are the first %d of this folder's %d: going on from this folder's", folder,
                     len(manifest_there["pieces"]), len(newer["pieces"]))
            manifest = newer
        else:
            manifest = take(folder, root)
    seen: dict[tuple[str, str], Any] = {}  # this checkout's dvc.lock and inputs' hashes, read once
    if not takes and not _kept_path(root).is_file():  # a fresh clone: what its commit records as
        manifest = _committed_record(root, seen)  # finished is not trained again (each checked as read)
    else:
        if not takes:  # a lease ran in this folder before (a warm machine's next call)
            manifest = _read_kept(root)
            log.info("going on from the %d earlier piece%s of this folder (%s)", len(manifest["pieces"]),
                     "" if len(manifest["pieces"]) == 1 else "s", _kept_path(root).relative_to(root))
        _forget_what_no_run_restores(root, manifest, seen)
    out.mkdir(parents=True, exist_ok=True)
    _name_running(_running_path(root), None)
    (out / "lease.log").write_text("")
    # sha256 None until packed: the parts in the folder until then are an earlier lease's, which
    # `skunet take` refuses under this manifest (a lease stopped outright never packs)
    piece: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
                             "budget_s": budget_s, "sha256": None}
    manifest["pieces"].append(piece)
    with _later_signals_wait() as signals:
        interrupted, failure = _run_trainings(root, out, manifest, start, deadline, signals)
        if interrupted is None and signals["came"]:  # it came as the work ended: packed all the same
            interrupted = Terminated() if signals["came"][0] == signal.SIGTERM else KeyboardInterrupt()
            piece["interrupted"] = _signal_name(interrupted)
        failure = _pack_and_keep(root, out, manifest, earlier, signals) or failure
        if piece.get("interrupted") and interrupted is None:  # it came while packing: the pieces are whole
            interrupted = Terminated() if piece["interrupted"] == "SIGTERM" else KeyboardInterrupt()
    if interrupted is not None or failure is not None:
        finished, in_progress = piece["finished"], piece["in_progress"]
        if piece["sha256"] is None:
            log.info("%s: nothing packed, by the error below (%s); the next lease in this folder packs what this"
                     " one did", out, "its earlier pieces are as they were" if earlier["pieces"] else "no pieces")
        else:
            log.info("%s: %s; packed %d finished training%s%s: bring back its files", out,
                     "interrupted" if interrupted is not None else "stopped by the error below", len(finished),
                     "" if len(finished) == 1 else "s", f" and {in_progress} in progress" if in_progress else "")
        raise (failure if piece["sha256"] is None else None) or interrupted or failure
    return manifest


def _run_trainings(root: Path, out: Path, manifest: dict[str, Any], start: float, deadline: float,
                   signals: dict[str, Any] | None = None) -> tuple[BaseException | None, BaseException | None]:
    """The diagnostics, then the trainings in order until the deadline; a signal or an error
    stops them (the one is returned, which the lease raises again once packed), and the last
    piece says what finished and what is in progress."""
    piece, log_path, running = manifest["pieces"][-1], out / "lease.log", _running_path(root)
    todo = [t for t in ORDER if manifest["trainings"].get(t, {}).get("status") not in DONE]
    stage_s: dict[str, float] = {}
    in_progress = current = interrupted = failure = tests = None

    def tests_end(now: bool = False) -> None:
        """The test cases end before the first training (the GPU to training alone): by TESTS_S
        after the lease's start, or at once (a signal, an error)."""
        nonlocal tests
        if tests is not None:  # cleared once ended: a signal while waiting leaves it to the `finally`
            ended = _end_cuda_tests(tests, out, time.time() if now else min(start + TESTS_S, deadline))
            tests = None
            piece.update(ended)
            _write_manifest(out, manifest)

    try:
        import torch

        piece.update(diagnostics())
        _write_manifest(out, manifest)
        if torch.cuda.is_available():
            measured = _benchmark_ran(manifest, piece["device"])
            if measured is None:
                piece.update(_benchmark(root, out, until=min(start + FIRST_MINUTE_S, deadline)))
            else:
                piece["benchmark"] = f"{measured}{_EARLIER}{piece['device']}"
            ran = _cuda_tests_ran(manifest, piece["device"])
            if ran is None:  # beside the data stages: see `tests_end` below
                tests = _start_cuda_tests(root, out)
            else:
                piece["cuda_tests"] = f"{ran}{_EARLIER}{piece['device']}"
            _write_manifest(out, manifest)
        if not (root / ".git").exists():
            code = _dvc(root, "config", "--local", "core.no_scm", "true", log_path=log_path)
            if code != 0:
                raise SkunetError(f"{root}: `dvc config --local core.no_scm true` failed (exit {code}; see"
                                  f" {log_path}); copy the whole project folder, its hidden files included")
        drawn: set[str] = set()
        for training in todo:
            if not _fits(root, out, training, manifest, deadline):
                break
            # a dataset's data stages just before its first training: a lease whose time is up
            # before CHASE_DB1's trainings spends none of it drawing CHASE_DB1's data
            dataset = training.split("-", 1)[0]
            if dataset not in drawn:
                t0, logged = time.time(), log_path.stat().st_size
                # stopped at the deadline too (its outputs are written whole or not at all)
                code = _dvc(root, "repro", f"augment@{dataset}", log_path=log_path,
                            timeout=max(0.0, deadline - time.time()), running=running)
                stage_s["data"] = stage_s.get("data", 0.0) + time.time() - t0
                drawn.add(dataset)
                if code == 124:
                    piece["stopped"] = f"data stages of {dataset} stopped at the deadline; see lease.log"
                    break
                if code != 0:
                    piece["error"] = f"data stages of {dataset} failed ({_stage_error(log_path, logged, code)})"
                    break
                if not _fits(root, out, training, manifest, deadline):
                    break
            if tests is not None:  # waited for: the time left is less
                tests_end()
                if not _fits(root, out, training, manifest, deadline):
                    break
            current, t0, logged = training, time.time(), log_path.stat().st_size
            code = _dvc(root, "repro", f"train@{training}", log_path=log_path,
                        env={"SKUNET_DEADLINE": f"{deadline:.3f}"}, running=running)
            current, stage_s[training] = None, time.time() - t0
            stopped = code != 0 and _stopped_for_time(log_path, training)
            if code == 0:
                status = "finished"
            elif stopped and _state_path(root, training).is_file():
                status, in_progress = "in progress", training
            elif stopped:  # its first epoch ran past the deadline
                piece["cut"] = {"training": training, "seconds": stage_s[training]}
                log.info("%s: its first epoch did not end before the deadline (%.0f s); nothing to keep",
                         training, stage_s[training])
                break
            else:
                status = f"failed (dvc repro exit {code}; see lease.log)"
                piece["error"] = f"{training} failed ({_stage_error(log_path, logged, code)})"
            done = _record(root, manifest, training, status, piece["device"])
            log.info("%s: %s after %d epoch%s (%.0f s)", training, status, done, "" if done == 1 else "s",
                     stage_s[training])
            if status != "finished":
                break
        tests_end()  # no training started: they still get their time
    except (KeyboardInterrupt, Terminated) as err:  # Ctrl-C, or a job scheduler's SIGTERM: pack what there is
        interrupted, piece["interrupted"] = err, _signal_name(err)
    except (SkunetError, OSError) as err:  # a damaged file, a full disk: pack what there is, then say it
        failure = err
        piece["error"] = str(err) if isinstance(err, SkunetError) else os_error_line(err)
    finally:
        tests_end(now=True)  # stopped by a signal or an error before the first training
        if signals is not None:  # from here on a signal waits for the packing (`_later_signals_wait`)
            signals["armed"] = False
    if current and _state_path(root, current).is_file():  # stopped mid-way: its last completed epoch
        in_progress = current
        _record(root, manifest, current, "in progress", piece.get("device", "unknown"))
    finished = [t for t in ORDER if manifest["trainings"].get(t, {}).get("status") == "finished"]
    # committed before: neither trained nor packed here (their models are in no commit)
    committed = [t for t in ORDER if manifest["trainings"].get(t, {}).get("status") == COMMITTED]
    piece.update(stage_seconds=stage_s, finished=finished, committed=committed, in_progress=in_progress,
                 wall_s=time.time() - start)
    return interrupted, failure


def _pack_and_keep(root: Path, out: Path, manifest: dict[str, Any], earlier: dict[str, Any],
                   signals: dict[str, Any] | None = None) -> Exception | None:
    """Pack into `out` (an error doing so, a full disk, is returned, and `out` keeps the
    `earlier` manifest its parts are of), then keep the manifest in this folder either way, so that
    the next lease here goes on from what this one did. A signal waits until all that is done."""
    piece, packed_not = manifest["pieces"][-1], None
    try:
        with _signals_held():
            if signals is not None:  # a first signal held here is raised at the end, and said below
                signals["armed"] = True
            try:
                _pack(root, out, piece["finished"], _resumable(root, manifest), manifest)
            except (SkunetError, OSError) as err:
                packed_not = err
                piece.setdefault("error", str(err) if isinstance(err, SkunetError) else os_error_line(err))
                with contextlib.suppress(OSError):  # else take refuses the parts under this one's manifest
                    _write_manifest(out, earlier if earlier["pieces"] else manifest)
            try:
                _keep(root, manifest)
            finally:
                _unname_running(_running_path(root))
    except (KeyboardInterrupt, Terminated) as err:  # it came while packing: the manifest says so too
        if not piece.get("interrupted"):
            piece["interrupted"] = _signal_name(err)
            if packed_not is None:
                _write_manifest(out, manifest)
            _keep(root, manifest)
    return packed_not


def _resumable(root: Path, manifest: dict[str, Any]) -> list[str]:
    """The trainings in progress whose resume state is in this folder: every piece carries them
    all, whether this lease went on with them or not; a damaged one stays here (the error that
    names it says to delete it), and its training is taken out of the manifest."""
    from skunet.checkpoints import read_resume_state

    states = []
    for training in ORDER:
        if manifest["trainings"].get(training, {}).get("status", "finished") in DONE:
            continue
        try:
            if read_resume_state(_state_path(root, training)) is not None:
                states.append(training)
        except SkunetError:
            log.info("%s: its resume state is damaged: not packed, the training starts over", training)
            manifest["trainings"].pop(training)
    return states


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C and SIGTERM held back for the block, and raised at its end. (The handlers are
    swapped, not the signals blocked: a signal mask is a thread's, and PyTorch's threads would
    take the signal in this one's place.)"""
    if threading.current_thread() is not threading.main_thread():  # handlers are the main thread's
        yield
        return
    came: list[int] = []
    held = {sig: signal.signal(sig, lambda signum, frame: came.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
        if came:
            signal.raise_signal(came[0])


@contextlib.contextmanager
def _later_signals_wait():
    """The first Ctrl-C or SIGTERM stops the lease's work, which then packs what it has; later
    ones are let go by (a scheduler that sends SIGTERM again, a second Ctrl-C), where the
    command's own handler would stop the process at once, before anything is packed. Yields
    ``{"came": [signals], "armed": bool}``: disarmed once the work is over, a first signal is only
    noted (raised there, it would cut the lease short between its work and its packing)."""
    signals: dict[str, Any] = {"came": [], "armed": True}
    if threading.current_thread() is not threading.main_thread():  # handlers are the main thread's
        yield signals
        return

    def stop(signum: int, frame: Any) -> None:
        signals["came"].append(signum)
        if len(signals["came"]) == 1 and signals["armed"]:
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated

    held = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def _signal_name(err: BaseException) -> str:
    return "SIGINT" if isinstance(err, KeyboardInterrupt) else "SIGTERM"


def _stage_error(log_path: Path, since: int, code: int) -> str:
    """A failed stage's own one-line error from what it logged after byte `since`, with DVC's exit
    status; the status alone where it said none."""
    with log_path.open("rb") as fh:
        fh.seek(since)
        lines = fh.read().decode(errors="replace").splitlines()
    said = [line.strip() for line in lines if line.startswith("error: ")]
    return f"exit {code}: {said[-1].removeprefix('error: ')}" if said else f"exit {code}; see lease.log"


def _record(root: Path, manifest: dict[str, Any], training: str, status: str, device: str) -> int:
    """Enter `training` in the manifest with its epochs so far; their number."""
    history = _history(root, training)
    seconds = _epoch_seconds(history)
    manifest["trainings"][training] = {"status": status, "epochs_done": len(seconds), "epoch_seconds": seconds,
                                       "peak_mib": _peak_mib(history), "device": device}
    return len(seconds)


# The files a lease writes into its --out folder.
LEASE_FILES = re.compile(rf"{re.escape(MANIFEST)}|\.{re.escape(MANIFEST)}\.tmp|lease\.log|benchmark-drive\.json"
                         rf"|{re.escape(PIECES)}\.[0-9][0-9]|\.{re.escape(PIECES)}\.[0-9][0-9]\.tmp")


def _check_out(out: Path) -> dict[str, Any]:
    """A lease's --out: new, empty, or one an earlier lease wrote (its files are replaced); never a
    folder with other files, which would travel home among the pieces, or another tool's manifest.
    Returns the manifest there (empty where there is none), which its parts stay with until this
    lease's are whole."""
    there = next((path for path in (out, *out.parents) if path.exists()), None)
    if there is not None and not there.is_dir():
        what = "a file" if there == out else f"{there} is a file"
        raise SkunetError(f"--out {out}: {what}, not a folder; give a new or empty folder")
    if not out.is_dir():
        return {"pieces": [], "trainings": {}}
    foreign = sorted(path.name for path in out.iterdir() if not LEASE_FILES.fullmatch(path.name))
    if foreign:
        raise SkunetError(f"--out {out}: holds {foreign[0]}, which a lease does not write; give a new or empty folder")
    return _read_manifest(out)


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(out / MANIFEST)


def _drawing_versions(manifest: dict[str, Any], training: str) -> dict[str, str]:
    """The versions that drew a training's data: those of the first piece on its device."""
    device = manifest["trainings"][training].get("device")
    piece = next((p for p in manifest["pieces"] if p.get("device") == device), {})
    return {k: piece[k] for k in ("numpy", "opencv", "albumentations") if k in piece}


def _drawn_by(manifest: dict[str, Any], training: str) -> str:
    return ", ".join(f"{k} {v}" for k, v in _drawing_versions(manifest, training).items()) or "unknown versions"


def summary(manifest: dict[str, Any], how: dict[str, str] | None = None) -> str:
    """What a checkout has after `skunet take`, and the commands that go on from there; `how`
    is :func:`adopt`'s answer (the home side), None on a lease machine."""
    trainings, how = manifest["trainings"], how or {}
    finished = [t for t in ORDER if trainings.get(t, {}).get("status") == "finished"]
    # committed before the lease: no pieces of them, their dvc.lock entries and metrics left as they are
    gone = {t: how[t].split(": ", 1)[1] for t in ORDER if how.get(t, "").startswith("not committed here: ")}
    committed = [t for t in ORDER if trainings.get(t, {}).get("status") == COMMITTED and t not in gone]
    lines = [f"{len(finished) + len(committed)} of {len(ORDER)} trainings finished: {', '.join(finished) or 'none'}"
             + (f" in these pieces; {', '.join(committed)} committed before (this checkout's dvc.lock and metrics,"
                " left as they are)" if committed else "")]
    for training, why in gone.items():
        lines.append(f"{training}: the lease took it as committed, but this checkout's record does not hold it"
                     f" ({why.removeprefix('committed (dvc.lock), but ')}), so `dvc repro` would train it again"
                     " here; take the pieces into a clone of the commit the lease ran")
    unpredicted = [t for t in committed if how.get(t) == UNPREDICTED]
    if unpredicted:
        lines.append(f"{', '.join(unpredicted)}: committed, but their predictions (DVC's, in no commit) are not in this"
                     " checkout, and `dvc repro -s compare` reads them; take the pieces into the checkout that"
                     " committed them (or `dvc pull` them from a DVC remote)")
    retrain = {t: how[t].split(": ", 1)[1] for t in finished if how.get(t, "").startswith("other code: ")}
    for training, differ in retrain.items():
        lines.append(f"{training}: trained from other code or parameters than this checkout's ({differ}), so"
                     " `dvc repro` would train it again here; take the pieces into a checkout of the commit the"
                     " lease ran, with its params.yaml")
    finished = [t for t in finished if t not in retrain]
    other = [t for t in finished if how.get(t) == "other data"]
    for training in other:
        lines.append(f"{training}: trained on data drawn with {_drawn_by(manifest, training)} on"
                     f" {trainings[training].get('device', 'another machine')}, not the data this checkout draws;"
                     " its lock entry and model are the training machine's, and `dvc status` says its data differ")
    for training in ORDER:
        entry = trainings.get(training)
        if entry and entry["status"] not in DONE:
            done = f"{entry['epochs_done']} epoch{'' if entry['epochs_done'] == 1 else 's'} done"
            if how.get(training, "").startswith("other "):
                lines.append(f"{training}: {entry['status']} ({done}), but its resume state was saved with"
                             f" {how[training]} than this checkout's, so the next lease or `dvc repro` here starts"
                             " it over; take the pieces into a checkout of the commit the lease ran, with its"
                             " params.yaml, to go on")
            else:
                lines.append(f"{training}: {entry['status']} ({done}; the next lease goes on from there, given"
                             " these files with --take)")
    missing = [t for t in ORDER if t not in trainings]
    if missing:
        lines.append(f"not yet trained: {', '.join(missing)}")
    cut = manifest["pieces"][-1].get("cut") if manifest["pieces"] else None
    if isinstance(cut, dict) and cut.get("training") in missing:
        lines.append(f"{cut['training']}: the last lease stopped its first epoch at the deadline after"
                     f" {float(cut['seconds']):.0f} s; the next lease on that device starts it only with at least"
                     " that much time left")
    if other:
        same = [t for t in finished if t not in other]
        first = f"dvc repro {' '.join(f'evaluate@{t}' for t in same)} && " if same else ""
        lines.append(f"next: `{first}dvc repro -s {' '.join(f'evaluate@{t}' for t in other)} compare` evaluates"
                     " the finished models here (a plain `dvc repro` would train those on other data again)")
    elif len(finished) == len(ORDER):
        lines.append("next: `dvc repro` takes the six trainings from the run cache and evaluates them here")
    elif finished:
        then = "skunet check" if len(finished) + len(committed) == len(ORDER) else "skunet check --allow-missing"
        lines.append("next: `dvc repro " + " ".join(f"evaluate@{t}" for t in finished)
                     + f" && dvc repro -s compare` evaluates what is finished (then `{then}`)")
    return "\n".join(lines)
