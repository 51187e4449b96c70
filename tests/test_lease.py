"""skunet lease / take: the paper run in pieces on time-boxed machines, tried at a tiny size."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import os
import shutil
import signal
import sys
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, project_copy
from skunet import lease as L
from skunet.config import deep_merge, parse_yaml, read_yaml
from skunet.errors import SkunetError
from skunet.recorded import other_inputs, same_value

# The tiny profile (params.tiny.yaml), as the README's recipe uses it: small enough for the CPU,
# long enough (6 epochs) that a deadline can stop a training mid-way.
TINY = read_yaml(ROOT / "params.tiny.yaml")
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env={**os.environ, "DVC_NO_ANALYTICS": "1", **env},
                            capture_output=True, text=True)
    assert result.returncode == 0, (cmd, result.stdout[-2000:], result.stderr[-2000:])
    return result


def _clone(template: Path, path: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(template), str(path)], check=True)
    return path


def _metrics(work: Path) -> dict[str, bytes]:
    return {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted(work.glob("metrics/*/*.json"))}


@pytest.mark.slow
def test_time_boxed_machines_then_take_give_the_metrics_of_one_uninterrupted_run(tmp_path, mirror):
    env = {"SKUNET_DATA_MIRROR": str(mirror)}
    template = project_copy(tmp_path / "template")
    params = yaml.safe_load((template / "params.yaml").read_text())
    (template / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, TINY), sort_keys=False))
    # no results committed (the project's may hold a partial paper run's, CHASE_DB1's among them)
    for path in [*template.glob("metrics/*/*.json"), template / L.RECORD]:
        path.unlink(missing_ok=True)
    subprocess.run([*GIT, "commit", "-qam", "tiny profile"], cwd=template, check=True)

    # one uninterrupted run, timed stage by stage for the budgets below; on the way, with DRIVE's
    # three trainings done and CHASE_DB1 not even downloaded, the partial run's comparison
    reference = _clone(template, tmp_path / "reference")
    data_s, train_s = 0.0, []
    for dataset in ("drive", "chase"):
        t0 = time.time()
        _run(["dvc", "repro", f"augment@{dataset}"], reference, env)
        data_s += time.time() - t0
        for training in (t for t in L.ORDER if t.startswith(dataset + "-")):
            t0 = time.time()
            _run(["dvc", "repro", f"train@{training}"], reference, env)
            train_s.append(time.time() - t0)
        if dataset == "drive":
            _check_the_partial_run(reference, env)
    _run(["dvc", "repro", *(f"evaluate@{t}" for t in L.ORDER if t.startswith("chase-"))], reference, env)
    expected = _metrics(reference)
    assert len(expected) == 6

    # machines with room for about one training each, every one in a fresh copy of the project
    # and starting from the files the previous one brought back only. A lease's fixed costs
    # (diagnostics, taking the pieces in, the data stages, packing) run longer than the
    # reference's data stages alone, and all of it varies with the machine's load (other tests
    # run beside this one): each lease measures its fixed costs (its wall time less its
    # trainings') and its trainings, and the next budget follows the latest measurements.
    fixed_s, one_and_a_half = data_s, 1.5 * sum(train_s) / len(train_s)
    previous, pieces = None, []
    for i in range(12):
        budget = fixed_s + one_and_a_half
        machine = _clone(template, tmp_path / f"machine{i}")
        out = tmp_path / f"out{i}"
        take = [str(previous)] if previous else []
        # the prepared command a GPU machine runs, with no time kept back for a transfer home
        _run(["bash", "scripts/lease.sh", f"{budget:.0f}", str(out), *take], machine, {**env, "SKUNET_LEASE_RESERVE": "0"})
        files = sorted(p.name for p in out.iterdir())
        assert len(files) <= L.MAX_FILES and all((out / f).stat().st_size <= L.MAX_FILE_BYTES for f in files)
        manifest = json.loads((out / L.MANIFEST).read_text())
        pieces.append(manifest["pieces"][-1])
        trained = {k: v for k, v in pieces[-1]["stage_seconds"].items() if k != "data"}
        fixed_s = pieces[-1]["wall_s"] - sum(trained.values())
        finished_here = [v for k, v in trained.items() if k in pieces[-1]["finished"]]
        if finished_here:
            one_and_a_half = 1.5 * sum(finished_here) / len(finished_here)
        assert all(entry["peak_mib"] > 0 for entry in manifest["trainings"].values())
        previous = out
        if len(manifest["pieces"][-1]["finished"]) == len(L.ORDER):
            break
    assert len(pieces) >= 3, [p["finished"] for p in pieces]
    stopped = [p["in_progress"] for p in pieces if p["in_progress"]]
    assert stopped, "no training was stopped mid-way by its deadline"
    assert all(len(p["finished"]) >= len(q["finished"]) for p, q in zip(pieces[1:], pieces))

    home = _clone(template, tmp_path / "home")
    summary = _run(["skunet", "take", str(previous)], home, env).stdout
    assert "6 of 6 trainings finished" in summary
    repro = _run(["dvc", "repro"], home, env).stdout
    assert repro.count("is cached - skipping run, checking out outputs") == 6, repro
    assert "Running stage 'train@" not in repro
    assert _metrics(home) == expected
    assert json.loads((home / "reports" / "pieces.json").read_text())["pieces"] == pieces


def _check_the_partial_run(work: Path, env: dict[str, str]) -> None:
    """Three of six trainings: the comparison, the report, the README section and `skunet check
    --allow-missing` work on them and name the three missing; a plain `skunet check` fails."""
    _run(["dvc", "repro", *(f"evaluate@drive-{m}" for m in ("unet", "unet_dropblock", "skunet"))], work, env)
    _run(["dvc", "repro", "-s", "compare"], work, env)
    assert not (work / "data" / "raw" / "chase").exists()
    missing = ("chase/unet (not yet trained); chase/unet_dropblock (not yet trained); "
               "chase/skunet (not yet trained)")
    assert f"**A partial run:** 3 of the 6 published models have no results yet, so their cells read `missing`: {missing}." \
        in (work / "reports" / "report.md").read_text()
    # the tiny models are far from the paper: with tolerances that pass any value, what fails
    # the check is what is missing, and only without --allow-missing
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["compare"]["tolerances"] = {k: 1.0 for k in params["compare"]["tolerances"]}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    allowed = _run(["skunet", "check", "--allow-missing"], work, env).stdout
    assert "3 model(s) missing, allowed (--allow-missing): a partial run" in allowed
    assert ("- chase/skunet: f1, accuracy, auc not reproduced (no metrics/chase/skunet.json: not yet trained; "
            "`dvc repro evaluate@chase-skunet` trains and evaluates it)") in allowed
    strict = subprocess.run(["skunet", "check"], cwd=work, env={**os.environ, **env}, capture_output=True, text=True)
    assert strict.returncode == 1 and "3 model(s) missing, FAIL" in strict.stdout
    subprocess.run(["git", "checkout", "params.yaml"], cwd=work, check=True)
    readme = _run(["skunet", "readme"], work, env).stdout
    assert "a partial run, 3 model(s) without results: chase/unet (not yet trained)" in readme
    assert missing in (work / "README.md").read_text()


def _state(path: Path, epochs: int) -> bytes:
    """A resume state after `epochs` epochs, as the train stage saves one (its keys; no weights
    needed here); its bytes."""
    from skunet.checkpoints import save_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({"fingerprint": "f", "epoch": epochs, "model": {}, "optimizer": {}, "scheduler": {}, "best": {},
                 "history": [{"epoch": e + 1, "seconds": 1.0} for e in range(epochs)]}, path)
    return path.read_bytes()


def _fake_run(root: Path, training: str, payload: bytes) -> str:
    """A run-cache entry of `training` and its output object, as DVC lays them out; the object's md5."""
    md5 = hashlib.md5(payload).hexdigest()
    obj = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(payload)
    dataset, model = training.split("-", 1)
    entry = root / ".dvc" / "cache" / "runs" / "cd" / ("cd" + "1" * 62) / ("ef" + "2" * 62)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(yaml.safe_dump({"cmd": f"python stages/train.py {dataset} {model}",
                                     "outs": [{"path": f"models/{dataset}/{model}.pt", "md5": md5}]}))
    return md5


def test_a_first_epoch_cut_by_an_earlier_lease_on_this_device_bounds_the_epoch_estimate(tmp_path):
    """A training whose first epoch outlasted a lease is not started again with less time than
    that lease gave it (it would be cut again); another device's cut says nothing here, and the
    training's own epochs, once known, decide."""
    here, there = {"device": "GPU A"}, {"device": "CPU (2 threads)"}
    cut = lambda s: {"cut": {"training": "drive-unet", "seconds": s}}
    manifest = {"pieces": [{**there, **cut(300.0)}, {**here, **cut(40.0)}, {**here, **cut(25.0)}, here],
                "trainings": {}}
    assert L._epoch_estimate(tmp_path, tmp_path, "drive-unet", manifest) == 40.0
    assert L._epoch_estimate(tmp_path, tmp_path, "drive-skunet", manifest) is None
    assert L._epoch_estimate(tmp_path, tmp_path, "drive-unet", {"pieces": [{**there, **cut(300.0)}, here],
                                                                "trainings": {}}) is None
    deadline = time.time() + 30
    assert not L._fits(tmp_path, tmp_path, "drive-unet", manifest, deadline)
    assert L._fits(tmp_path, tmp_path, "drive-skunet", manifest, deadline)  # unknown: tried
    manifest["pieces"][-1] = {**here, **cut(45.0)}
    assert ("drive-unet: the last lease stopped its first epoch at the deadline after 45 s; the next lease on that"
            " device starts it only with at least that much time left") in L.summary(manifest)
    manifest["trainings"]["drive-unet"] = {"status": "in progress", "epochs_done": 1, "epoch_seconds": [12.0]}
    assert L._epoch_estimate(tmp_path, tmp_path, "drive-unet", manifest) == 12.0
    assert "stopped its first epoch" not in L.summary(manifest)  # it has epochs now


def test_a_training_log_of_another_run_in_the_checkout_is_not_the_epoch_estimate(tmp_path):
    """A training still to do may have a committed log from another run (the paper profile's,
    on a GPU): its epoch times say nothing of this run's, which is tried where nothing else is known."""
    log_csv = tmp_path / "plots" / "train" / "chase" / "skunet.csv"
    log_csv.parent.mkdir(parents=True)
    log_csv.write_text("epoch,train_loss,val_loss,val_f1,lr,seconds,peak_mib\n"
                       "1,0.2,0.3,0.1,0.001,500.0,8000.0\n")
    manifest = {"pieces": [{"device": "CPU (2 threads)"}], "trainings": {}}
    assert L._epoch_estimate(tmp_path, tmp_path, "chase-skunet", manifest) is None
    assert L._fits(tmp_path, tmp_path, "chase-skunet", manifest, time.time() + 30)


def test_pieces_split_into_parts_that_take_joins(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "MAX_FILE_BYTES", 4096)
    machine, out, home = tmp_path / "machine", tmp_path / "out", tmp_path / "home"
    payload = os.urandom(10_000)
    md5 = _fake_run(machine, "drive-unet", payload)
    (machine / ".skunet-state").mkdir()
    state = _state(machine / ".skunet-state" / "drive-skunet.pt", 2)
    out.mkdir()
    (out / "pieces.tar.09").write_bytes(b"an earlier lease's last part")
    names = list(L._pack(machine, out, ["drive-unet"], ["drive-skunet"]))
    assert sorted(p.name for p in out.glob("pieces.tar.*")) == names
    assert names == [f"pieces.tar.{i:02d}" for i in range(len(names))] and len(names) >= 3
    assert all((out / n).stat().st_size <= 4096 for n in names)
    (out / L.MANIFEST).write_text(json.dumps({"pieces": [], "trainings": {
        "drive-unet": {"status": "finished", "epochs_done": 6, "epoch_seconds": []},
        "drive-skunet": {"status": "in progress", "epochs_done": 2, "epoch_seconds": []}}}))
    home.mkdir()
    manifest = L.take(out, home)
    assert (home / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_bytes() == payload
    assert (home / ".skunet-state" / "drive-skunet.pt").read_bytes() == state
    text = L.summary(manifest)
    assert text.splitlines()[0] == "1 of 6 trainings finished: drive-unet"
    assert "drive-skunet: in progress (2 epochs done" in text
    assert "not yet trained: drive-unet_dropblock, chase-unet, chase-unet_dropblock, chase-skunet" in text
    assert "dvc repro evaluate@drive-unet && dvc repro -s compare" in text


def test_pieces_that_are_too_large_for_the_files_a_lease_sends_back_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "MAX_FILE_BYTES", 1024)
    _fake_run(tmp_path / "machine", "drive-unet", os.urandom(10_000))
    (tmp_path / "out").mkdir()
    with pytest.raises(SkunetError, match="more than 5 files of"):
        L._pack(tmp_path / "machine", tmp_path / "out", ["drive-unet"], [])
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(("name", "link"), [("../escape.txt", None), ("src/skunet/evil.py", None),
                                            (".dvc/cache/../../escape.txt", None), ("/.dvc/cache/escape.txt", None),
                                            (".dvc/cache/files/md5/ab/link", "../../../../../escape.txt")])
def test_take_refuses_a_folder_whose_pieces_reach_elsewhere(tmp_path, name, link):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "pieces.tar.00").write_bytes(buffer.getvalue())
    (tmp_path / "out" / L.MANIFEST).write_text('{"pieces": [], "trainings": {}}')
    (tmp_path / "home").mkdir()
    with pytest.raises(SkunetError, match="is not a piece of a lease; refusing the folder"):
        L.take(tmp_path / "out", tmp_path / "home")
    assert list((tmp_path / "home").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_pieces_travel_between_caches_wherever_dvc_cache_dir_puts_them(tmp_path):
    """A cache shared on a cluster (`dvc cache dir`): packed from it, taken into it."""
    machine, out, home = tmp_path / "machine", tmp_path / "out", tmp_path / "home"
    for root, cache in ((machine, tmp_path / "shared-a"), (home, tmp_path / "shared-b")):
        (root / ".dvc").mkdir(parents=True)
        (root / ".dvc" / "config").write_text(f"[cache]\n    dir = {cache}\n")
    md5 = _fake_run(tmp_path / "staging", "drive-unet", b"weights")
    shutil.copytree(tmp_path / "staging" / ".dvc" / "cache", tmp_path / "shared-a")
    out.mkdir()
    L._pack(machine, out, ["drive-unet"], [])
    (out / L.MANIFEST).write_text('{"pieces": [], "trainings": {}}')
    L.take(out, home)
    assert (tmp_path / "shared-b" / "files" / "md5" / md5[:2] / md5[2:]).read_bytes() == b"weights"
    assert not (home / ".dvc" / "cache").exists()


def _leased(tmp_path, monkeypatch) -> Path:
    """A lease's folder: drive-unet finished, packed into at least three parts with their sha256 in
    the manifest, as :func:`skunet.lease.lease` writes them."""
    monkeypatch.setattr(L, "MAX_FILE_BYTES", 4096)
    machine, out = tmp_path / "machine", tmp_path / "out"
    _fake_run(machine, "drive-unet", os.urandom(8192))
    out.mkdir()
    digests = L._pack(machine, out, ["drive-unet"], [])
    assert 3 <= len(digests) < 9
    (out / L.MANIFEST).write_text(json.dumps({"pieces": [{"sha256": digests, "files": list(digests)}], "trainings": {
        "drive-unet": {"status": "finished", "epochs_done": 6, "epoch_seconds": []}}}))
    (tmp_path / "home").mkdir()
    return out


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda out: (out / "pieces.tar.01").unlink(), r"pieces.tar.01: missing; bring back all of the files"),
    (lambda out: (out / "pieces.tar.02").write_bytes((out / "pieces.tar.02").read_bytes()[:-512]),
     r"pieces.tar.02: damaged or cut short"),
    (lambda out: _flip_last_byte(out / "pieces.tar.00"), r"pieces.tar.00: damaged or cut short"),
    (lambda out: (out / "pieces.tar.09").write_bytes(b"x"), r"pieces.tar.09: not a part of this lease's pieces"),
])
def test_take_checks_every_part_against_the_manifest_before_writing(tmp_path, monkeypatch, damage, problem):
    """tarfile reads a bad header as the end of the archive, and a tar keeps no checksum of its data:
    a missing middle part or a flipped byte went in unsaid, and `dvc repro` trained again."""
    out = _leased(tmp_path, monkeypatch)
    damage(out)
    with pytest.raises(SkunetError, match=problem):
        L.take(out, tmp_path / "home")
    assert list((tmp_path / "home").iterdir()) == []


def test_take_checks_each_object_against_its_md5_and_each_finished_training_against_a_run(tmp_path, monkeypatch):
    out = _leased(tmp_path, monkeypatch)
    manifest = json.loads((out / L.MANIFEST).read_text())
    # a lease from before the parts' digests: the objects themselves are still checked
    del manifest["pieces"][0]["sha256"]
    (out / L.MANIFEST).write_text(json.dumps(manifest))
    _flip_last_byte(out / "pieces.tar.00")
    with pytest.raises(SkunetError, match=r"out: .dvc/cache/files/md5/\w\w/\w+ is damaged \(its bytes do not have the md5"):
        L.take(out, tmp_path / "home")
    _flip_last_byte(out / "pieces.tar.00")
    # a manifest that calls a training finished which the pieces do not hold
    manifest["trainings"]["chase-unet"] = {"status": "finished", "epochs_done": 6, "epoch_seconds": []}
    (out / L.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SkunetError, match="its manifest says chase-unet finished, but the pieces hold no run of it"):
        L.take(out, tmp_path / "home")
    assert list((tmp_path / "home").iterdir()) == []
    manifest["trainings"]["chase-unet"] = "finished"
    (out / L.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SkunetError, match=r"manifest.json: 'trainings.chase-unet' is not as a lease writes it"):
        L.take(out, tmp_path / "home")


def test_a_lease_refuses_an_out_folder_with_other_files_and_a_budget_within_its_reserve(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(SkunetError, match=r"--out .*out: holds notes.txt, which a lease does not write"):
        L.lease(tmp_path, 60, tmp_path / "out", [])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    for args, message in ((["--budget", "5"], "--budget 5 --reserve 20 (SKUNET_LEASE_RESERVE for scripts/lease.sh):"
                                               " the seconds kept back"),
                          (["--budget", "nan"], "--budget nan: give the seconds"),
                          (["--budget", "60", "--reserve", "-1"], "--budget 60 --reserve -1 (SKUNET_LEASE_RESERVE")):
        result = subprocess.run([sys.executable, "-m", "skunet", "lease", *args, "--out", "o2"], cwd=tmp_path,
                                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert result.returncode == 2 and result.stderr.startswith(f"error: {message}"), result.stderr
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("text", ["{", "[]", '{"pieces": {}}'])
def test_a_lease_refuses_a_damaged_kept_manifest_before_writing_anything(tmp_path, text):
    """A lease without --take goes on from the folder's .skunet-state/lease.json; a damaged one is
    one line naming it and what to do, and nothing is written."""
    (tmp_path / ".skunet-state").mkdir()
    (tmp_path / ".skunet-state" / "lease.json").write_text(text)
    with pytest.raises(SkunetError, match=r"^" + re.escape(str(tmp_path / ".skunet-state" / "lease.json"))
                       + r": not a lease's manifest \(.*\); remove it to start afresh, or give --take"):
        L.lease(tmp_path, 60, tmp_path / "out", [])
    assert not (tmp_path / "out").exists()


def test_take_needs_the_parts_and_their_manifest(tmp_path):
    with pytest.raises(SkunetError, match="no pieces.tar.NN files"):
        L.take(tmp_path, tmp_path)
    with pytest.raises(SkunetError, match="^" + str(tmp_path / "absent") + ": no such folder; give the folder a lease"):
        L.take(tmp_path / "absent", tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(SkunetError, match="^" + str(tmp_path / "file") + ": not a folder; give the folder a lease"):
        L.take(tmp_path / "file", tmp_path)
    out, home = tmp_path / "out", tmp_path / "home"
    _fake_run(tmp_path / "machine", "drive-unet", b"weights")
    out.mkdir()
    L._pack(tmp_path / "machine", out, ["drive-unet"], [])
    home.mkdir()
    with pytest.raises(SkunetError, match=r"out/manifest.json: missing \(the pieces cannot be checked without it\)"):
        L.take(out, home)
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "not readable as a lease's manifest"), ("[]", "not a lease's manifest"),
    ('{"pieces": [1], "trainings": {}}', r"'pieces\[0\]' is not as a lease writes it"),
    ('{"pieces": [{"cut": {"training": "drive-unet", "seconds": "soon"}}], "trainings": {}}',
     r"'pieces\[0\]' is not as a lease writes it"),
    ('{"pieces": [], "trainings": {"drive-unet": {"status": "finished", "epochs_done": 1, "epoch_seconds": ["1"]}}}',
     "'trainings.drive-unet' is not as a lease writes it"),
])
def test_take_and_lease_refuse_a_damaged_manifest_before_writing_anything(tmp_path, text, problem):
    taken, home, out = tmp_path / "taken", tmp_path / "home", tmp_path / "out"
    _fake_run(taken, "drive-unet", b"weights")
    (taken / "pieces.tar.00").write_bytes(b"")
    (taken / L.MANIFEST).write_text(text)
    home.mkdir()
    with pytest.raises(SkunetError, match=f"manifest.json: {problem}"):
        L.take(taken, home)
    with pytest.raises(SkunetError, match=f"manifest.json: {problem}"):
        L.lease(home, 60, out, [taken])
    assert list(home.iterdir()) == [] and not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    ([], "usage: scripts/lease.sh BUDGET_S OUT_DIR [TAKE_DIR]"),
    (["30", ""], "usage: scripts/lease.sh BUDGET_S OUT_DIR [TAKE_DIR]"),
    (["9 min", "out"], "9 min: not a whole number of seconds from 1 to 9999999; give the time this machine is lent for"),
    (["0", "out"], "0: not a whole number of seconds from 1 to 9999999; give the time this machine is lent for"),
    (["18446744073709551617", "out"],
     "18446744073709551617: not a whole number of seconds from 1 to 9999999; give the time this machine is lent for"),
])
def test_the_lease_script_refuses_bad_arguments_in_one_line(tmp_path, args, message):
    result = subprocess.run(["bash", str(Path(L.__file__).parents[2] / "scripts" / "lease.sh"), *args],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip() == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_training_on_data_drawn_elsewhere_is_taken_with_its_own_lock_entry(tmp_path, mirror):
    """Another NumPy or OpenCV on the lease machine draws other augmentations (simulated here by
    another rotation range there): the run cache cannot restore that training at home, so `take`
    writes the training machine's lock entry, puts its model in place, says so, and `dvc repro -s
    evaluate@...` gives the lease machine's own metrics, while `dvc status` says the data differ."""
    env = {"SKUNET_DATA_MIRROR": str(mirror)}
    template = project_copy(tmp_path / "template")
    params = deep_merge(yaml.safe_load((template / "params.yaml").read_text()), TINY)
    (template / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([*GIT, "commit", "-qam", "tiny profile"], cwd=template, check=True)

    machine = _clone(template, tmp_path / "machine")
    rotate = next(t for t in params["augment"]["transforms"] if t["type"] == "Rotate")
    rotate["args"]["limit"] = [-10, 10]
    (machine / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["dvc", "repro", "train@drive-unet"], machine, env)
    _run(["dvc", "repro", "-s", "evaluate@drive-unet"], machine, env)
    out = tmp_path / "out"
    out.mkdir()
    L._pack(machine, out, ["drive-unet"], [])
    (out / L.MANIFEST).write_text(json.dumps({
        "pieces": [{"device": "GPU X", "numpy": "9.9", "opencv": "9.8", "albumentations": "9.7"}],
        "trainings": {"drive-unet": {"status": "finished", "epochs_done": 6, "epoch_seconds": [],
                                     "device": "GPU X"}}}))

    home = _clone(template, tmp_path / "home")
    summary = _run(["skunet", "take", str(out)], home, env).stdout
    assert ("drive-unet: trained on data drawn with numpy 9.9, opencv 9.8, albumentations 9.7 on GPU X,"
            " not the data this checkout draws") in summary
    assert "`dvc repro -s evaluate@drive-unet compare`" in summary
    assert (home / "models/drive/unet.pt").read_bytes() == (machine / "models/drive/unet.pt").read_bytes()
    lock = lambda root: yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert lock(home)["train@drive-unet"] == lock(machine)["train@drive-unet"]
    assert lock(home)["augment@drive"]["outs"] != lock(machine)["augment@drive"]["outs"]
    _run(["dvc", "repro", "-s", "evaluate@drive-unet"], home, env)
    assert _metrics(home) == _metrics(machine)
    status = _run(["dvc", "status", "train@drive-unet"], home, env).stdout
    assert "modified:" in status and "data/augmented/drive" in status

    # the same libraries drew other data: the data stages' inputs differ, not the versions; the
    # training is named for retraining and dvc.lock is left alone
    from skunet.data.augment import library_versions

    (out / L.MANIFEST).write_text(json.dumps({
        "pieces": [{"device": "GPU X", **library_versions()}],
        "trainings": {"drive-unet": {"status": "finished", "epochs_done": 6, "epoch_seconds": [], "device": "GPU X"}}}))
    home = _clone(template, tmp_path / "home2")
    summary = _run(["skunet", "take", str(out)], home, env).stdout
    assert ("drive-unet: trained from other code or parameters than this checkout's (the data stages' inputs"
            in summary)
    assert lock(home).get("train@drive-unet") == lock(template).get("train@drive-unet")  # no lock entry of the lease's


@pytest.mark.parametrize(("args", "env", "message"), [
    ([], {}, "usage: scripts/lease_tree.sh PYTHON_VERSION HAVE_FILE [LIMIT_MIB] [--take DIR]"),
    (["3.12", "have.txt", "--take"], {}, "usage: scripts/lease_tree.sh PYTHON_VERSION HAVE_FILE [LIMIT_MIB] [--take DIR]"),
    (["3.12", "have.txt", "--take", "empty"], {},
     "empty/manifest.json: no such file; give the folder an earlier lease brought back (its --out)"),
    (["3.12", "nothere.txt"], {}, "nothere.txt: no such file; give the GPU machine's package list (pip freeze there)"),
    (["3.12", "have.txt"], {"SKUNET_DATA_MIRROR": "empty"},
     "SKUNET_DATA_MIRROR=empty: needs DRIVE.zip and CHASEDB1.zip; set it to the folder that holds them"),
])
def test_the_lease_tree_script_refuses_bad_arguments_in_one_line(tmp_path, args, env, message):
    (tmp_path / "have.txt").write_text("numpy==2.5.2\n")
    (tmp_path / "empty").mkdir()
    script = Path(L.__file__).parents[2] / "scripts" / "lease_tree.sh"
    result = subprocess.run(["bash", str(script), *args], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "SKUNET_DATA_MIRROR": "", **env})
    assert result.returncode == 2 and result.stderr.strip() == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "have.txt"]


def test_the_lease_tree_script_refuses_a_take_with_nothing_left_to_train(tmp_path):
    from skunet.data.augment import library_versions

    out = tmp_path / "out"
    out.mkdir()
    trainings = {t: {"status": "finished" if t.startswith("drive") else "committed", "epochs_done": 50,
                     "epoch_seconds": [], "device": "GPU X"} for t in L.ORDER}
    (out / "manifest.json").write_text(json.dumps({"pieces": [{"device": "GPU X", **library_versions()}],
                                                   "trainings": trainings}))
    (tmp_path / "have.txt").write_text("numpy==2.5.2\n")
    script = Path(L.__file__).parents[2] / "scripts" / "lease_tree.sh"
    result = subprocess.run(["bash", str(script), "3.12", "have.txt", "--take", "out"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "SKUNET_DATA_MIRROR": ""})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"{out}: every training is finished or committed there; `skunet take {out}` at"
                                     " home, no lease")
    del trainings["chase-skunet"]  # one left: past the manifest, on to the archives
    (out / "manifest.json").write_text(json.dumps({"pieces": [{"device": "GPU X", **library_versions()}],
                                                   "trainings": trainings}))
    result = subprocess.run(["bash", str(script), "3.12", "have.txt", "--take", "out"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "SKUNET_DATA_MIRROR": ""})
    assert result.returncode == 2 and result.stderr.strip().startswith("SKUNET_DATA_MIRROR=: needs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["have.txt", "out"]


def _models_md5_by_dvc(root: Path) -> str:
    """The md5 DVC itself records for src/skunet/models as a stage's dependency (dvc.lock)."""
    _run([sys.executable, "-m", "dvc", "stage", "add", "--force", "-n", "uses_models", "-d", "src/skunet/models",
          "true"], root, {})
    _run([sys.executable, "-m", "dvc", "repro", "uses_models"], root, {})
    deps = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["uses_models"]["deps"]
    return next(dep["md5"] for dep in deps if dep["path"] == "src/skunet/models")


def test_take_names_a_training_made_from_other_code_or_parameters(tmp_path):
    _run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], tmp_path, {})
    shutil.copyfile(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "train.py").write_text("the lease's code\n")
    models = tmp_path / "src" / "skunet" / "models"
    models.mkdir(parents=True)
    (models / "unet.py").write_text("the lease's model\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": {"unet": {"lr": 0.003}}, "base": {"seed": 42}}))
    entry = {"cmd": "python stages/train.py drive unet",
             "deps": [{"path": "stages/train.py", "md5": hashlib.md5(b"the lease's code\n").hexdigest()},
                      {"path": "src/skunet/models", "md5": _models_md5_by_dvc(tmp_path)},
                      {"path": "data/augmented/drive", "md5": "1" * 32 + ".dir"}],
             "params": {"params.yaml": {"models.unet": {"lr": 0.003}, "base.seed": 42}}}
    (tmp_path / ".dvc" / "config").write_text("")  # as the project's: on a lease, a copy without git
    assert other_inputs(tmp_path, entry) == []
    # bytecode beside the sources is no input (.dvcignore): this machine's, not the lease's
    (models / "__pycache__").mkdir()
    (models / "__pycache__" / "unet.cpython-312.pyc").write_bytes(b"this machine's bytecode")
    assert other_inputs(tmp_path, entry) == []
    (tmp_path / "stages" / "train.py").write_text("this checkout's code\n")
    (models / "unet.py").write_text("this checkout's model\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": {"unet": {"lr": 0.002}}, "base": {"seed": 42}}))
    assert other_inputs(tmp_path, entry) == ["stages/train.py", "src/skunet/models", "params.yaml:models.unet"]
    shutil.rmtree(models)
    assert other_inputs(tmp_path, entry)[1] == "src/skunet/models"
    manifest = {"pieces": [], "trainings": {t: {"status": "finished", "epochs_done": 6} for t in L.ORDER}}
    how = {t: "run cache" for t in L.ORDER} | {"drive-unet": "other code: params.yaml:models.unet"}
    text = L.summary(manifest, how)
    assert ("drive-unet: trained from other code or parameters than this checkout's (params.yaml:models.unet), so"
            " `dvc repro` would train it again here") in text
    assert "next: `dvc repro evaluate@drive-unet_dropblock evaluate@drive-skunet evaluate@chase-unet" in text


def test_take_names_a_training_in_progress_whose_resume_state_other_code_or_parameters_saved(tmp_path):
    """A resume state is resumed only by the code and parameters that saved it: where the pieces
    come from another commit or params.yaml, `skunet take` says that the training starts over."""
    from skunet.checkpoints import save_atomic
    from skunet.config import load_params, model_config
    from skunet.training import params_fingerprint, stage_code, train_config

    root = project_copy(tmp_path / "home")
    params = load_params(root / "params.yaml")
    manifest = {"pieces": [], "trainings": {"drive-unet": {"status": "finished", "epochs_done": 6},
                                            "drive-skunet": {"status": "in progress", "epochs_done": 3}}}
    state = {"fingerprint": "f", "code": stage_code(root), "epoch": 3, "model": {}, "optimizer": {},
             "scheduler": {}, "best": {}, "history": [],
             "params": params_fingerprint(model_config(params, "drive", "skunet"), train_config(params, "drive", "skunet"))}
    save_atomic(state, L._state_path(root, "drive-skunet"))
    assert L._states_of_other_inputs(root, manifest) == {}
    assert "drive-skunet: in progress (3 epochs done; the next lease goes on from there" in L.summary(manifest, {})
    model = root / "src" / "skunet" / "models" / "unet.py"
    original = model.read_text()
    model.write_text(original + "# edited\n")
    how = L._states_of_other_inputs(root, manifest)
    assert how == {"drive-skunet": "other code"}
    assert ("drive-skunet: in progress (3 epochs done), but its resume state was saved with other code than this"
            " checkout's, so the next lease or `dvc repro` here starts it over") in L.summary(manifest, how)
    (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("lr: 0.001", "lr: 0.002"))
    assert L._states_of_other_inputs(root, manifest) == {"drive-skunet": "other code and parameters"}
    model.write_text(original)
    assert L._states_of_other_inputs(root, manifest) == {"drive-skunet": "other parameters"}


def test_a_lease_trains_again_what_was_finished_from_other_inputs_or_has_no_run_here(tmp_path, caplog):
    """A training an earlier piece finished is left alone only where this folder's run cache holds
    a run of it made from this folder's code and parameters (the one `dvc repro` restores)."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"models": {"unet": {"lr": 0.002}}}))
    _fake_run(tmp_path, "drive-unet", b"weights")
    entry = next((tmp_path / ".dvc" / "cache" / "runs").glob("*/*/*"))
    run = yaml.safe_load(entry.read_text())
    entry.write_text(yaml.safe_dump({**run, "params": {"params.yaml": {"models.unet": {"lr": 0.003}}}}))
    manifest = {"pieces": [], "trainings": {t: {"status": "finished"} for t in ("drive-unet", "drive-skunet")}
                | {"chase-unet": {"status": "in progress"}}}
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        L._forget_what_no_run_restores(tmp_path, manifest)
    assert manifest["trainings"] == {"chase-unet": {"status": "in progress"}}
    assert "drive-unet: finished before, from other inputs than this folder's (params.yaml:models.unet)" in caplog.text
    assert "drive-skunet: finished before, from other inputs than this folder's (no run of it in this folder's DVC" \
        " cache)" in caplog.text
    entry.write_text(yaml.safe_dump({**run, "params": {"params.yaml": {"models.unet": {"lr": 0.002}}}}))
    manifest = {"pieces": [], "trainings": {"drive-unet": {"status": "finished"}}}
    L._forget_what_no_run_restores(tmp_path, manifest)
    assert manifest["trainings"] == {"drive-unet": {"status": "finished"}}


def test_take_reads_params_and_run_cache_entries_as_dvc_does(tmp_path):
    """`lr: 1e-5` is a number to DVC (YAML 1.2), which writes it as `1e-05` in the run-cache
    entry; read as YAML 1.1 both were strings, and differing ones: a training from this very
    checkout was called one of other parameters."""
    (tmp_path / "params.yaml").write_text("models:\n  unet:\n    lr: 1e-5\n")
    entry = tmp_path / "entry.yaml"
    entry.write_text("cmd: python stages/train.py drive unet\nparams:\n  params.yaml:\n    models.unet:\n      lr: 1e-05\n")
    assert other_inputs(tmp_path, parse_yaml(entry.read_text())) == []
    (tmp_path / "params.yaml").write_text("models:\n  unet:\n    lr: 1e-4\n")
    assert other_inputs(tmp_path, parse_yaml(entry.read_text())) == ["params.yaml:models.unet"]


@pytest.mark.slow
def test_a_lease_stopped_by_sigterm_packs_what_it_has(tmp_path, mirror):
    """A job scheduler's SIGTERM (or Ctrl-C) in the middle of a training: the training is stopped
    too, not left running, and the finished one and the resume state travel home all the same."""
    env = {**os.environ, "SKUNET_DATA_MIRROR": str(mirror), "DVC_NO_ANALYTICS": "1"}
    work = project_copy(tmp_path / "machine")
    params = deep_merge(yaml.safe_load((work / "params.yaml").read_text()), TINY)
    params["train"]["common"]["epochs"] = 12  # time to stop it in the middle
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([*GIT, "commit", "-qam", "tiny profile"], cwd=work, check=True)
    out, log = tmp_path / "out", tmp_path / "lease.err"
    with log.open("w") as err:
        lease = subprocess.Popen(["skunet", "lease", "--budget", "900", "--out", str(out)], cwd=work, env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 600
    while lease.poll() is None and time.time() < deadline and not (
            (out / "lease.log").is_file() and "drive/unet_dropblock epoch 2:" in (out / "lease.log").read_text()):
        time.sleep(0.1)
    lease.send_signal(signal.SIGTERM)
    assert lease.wait(120) == 143, log.read_text()[-2000:]
    assert "interrupted; packed 1 finished training and drive-unet_dropblock in progress" in log.read_text()
    assert not [p for p in Path("/proc").glob("[0-9]*") if _cwd(p) == work and b"stages/train.py" in _cmdline(p)], \
        "the training was left running"
    manifest = json.loads((out / L.MANIFEST).read_text())
    piece = manifest["pieces"][-1]
    assert piece["interrupted"] == "SIGTERM" and piece["finished"] == ["drive-unet"]
    assert piece["in_progress"] == "drive-unet_dropblock" and manifest["trainings"]["drive-unet_dropblock"]["epochs_done"] >= 1
    home = project_copy(tmp_path / "home")
    manifest = L.take(out, home)
    assert (home / ".skunet-state" / "drive-unet_dropblock.pt").is_file()
    assert L.summary(manifest).startswith("1 of 6 trainings finished: drive-unet\n")
    # the stage saved the code a copy of it has, and the parameters of this (tiny) profile
    assert L._states_of_other_inputs(home, manifest) == {"drive-unet_dropblock": "other parameters"}
    assert L._states_of_other_inputs(work, manifest) == {}

    # the machine's next call, in the same folder and without --take: it goes on from there, with
    # the first piece in its manifest, drive-unet finished already and drive-unet_dropblock resumed
    out2 = tmp_path / "out2"
    result = subprocess.run(["skunet", "lease", "--budget", "25", "--reserve", "0", "--out", str(out2)], cwd=work,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "going on from the 1 earlier piece of this folder (.skunet-state/lease.json)" in result.stderr
    second = json.loads((out2 / L.MANIFEST).read_text())
    assert second["pieces"][0] == piece and len(second["pieces"]) == 2
    assert "drive-unet" not in second["pieces"][1]["stage_seconds"]  # not even restored: it is done
    assert second["trainings"]["drive-unet_dropblock"]["epochs_done"] > \
        manifest["trainings"]["drive-unet_dropblock"]["epochs_done"]
    assert "resuming unet_dropblock on drive after epoch" in (out2 / "lease.log").read_text()


@pytest.mark.slow
def test_a_lease_keeps_its_budget_when_a_first_epoch_is_longer_than_the_time_left(tmp_path, mirror):
    """No epoch time is known yet (no GPU benchmark, no earlier piece), so the first training is
    tried, and its first epoch is longer than the lease: the training stops at the deadline, not at
    the end of its epoch, and the lease packs and says so in time, instead of being cut off by the
    machine's own limit with nothing packed."""
    env = {"SKUNET_DATA_MIRROR": str(mirror)}
    work = project_copy(tmp_path / "machine")
    params = deep_merge(yaml.safe_load((work / "params.yaml").read_text()), TINY)
    params["models"]["unet"]["base_width"] = 256  # an epoch of minutes on a CPU
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run([*GIT, "commit", "-qam", "tiny profile, wide U-Net"], cwd=work, check=True)
    _run(["dvc", "repro", "augment@drive"], work, env)  # drawn already: the lease's data stages are DVC's check
    out, budget = tmp_path / "out", 40
    said = _run(["skunet", "lease", "--budget", str(budget), "--reserve", "0", "--out", str(out)], work, env).stdout
    manifest = json.loads((out / L.MANIFEST).read_text())
    piece = manifest["pieces"][-1]
    assert piece["cut"]["training"] == "drive-unet", piece
    assert piece["wall_s"] < budget + 20, piece  # the step in progress, the stage's exit and the packing
    assert piece["finished"] == [] and piece["in_progress"] is None and manifest["trainings"] == {}
    assert "drive-unet cut in its first epoch by the deadline" in said
    assert "out of time: drive/unet stopped during epoch 1 of 6 at the deadline" in (out / "lease.log").read_text()


def test_the_cuda_checks_run_where_pytest_xdist_is_not_installed():
    """A GPU machine's image may have pytest alone: the lease's `-k cuda` test cases still run
    there (skipped here, with no GPU), with no complaint about xdist's hook in conftest."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                             "-k", "cuda", "tests/test_models.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "INTERNALERROR" not in result.stdout and "skipped" in result.stdout


def test_the_cuda_checks_end_when_their_time_does(tmp_path):
    """The benchmark and the `-k cuda` test cases end by the time given them (the lease's first
    minute), and leave nothing half-written: here, on a CPU, the paper-size benchmark cannot
    finish its first model in the time it gets, so it is stopped and says so. In a copy of the
    project, as on a lease, they run the copy's code (its tests refuse any other)."""
    root = project_copy(tmp_path / "project")
    out = tmp_path / "out"
    out.mkdir()
    t0 = time.time()
    checks = {**L._benchmark(root, out, until=t0 + 6),
              **L._end_cuda_tests(L._start_cuda_tests(root, out), out, until=t0 + 10)}
    assert time.time() - t0 < 20, checks  # the two stops (SIGTERM, then a wait) take a moment
    assert checks["benchmark"] == "no model measured (stopped at the end of its time)", checks
    # no GPU here: the nine cases skip, or some are still starting when their time ends
    assert re.fullmatch(r"(\d+ skipped|none ended)(; stopped at the end of its time \(see lease.log\))?",
                        checks["cuda_tests"]), checks
    assert all(L.LEASE_FILES.fullmatch(p.name) for p in out.iterdir()), sorted(p.name for p in out.iterdir())


def test_the_cuda_test_cases_run_in_the_background_and_end_when_told(tmp_path):
    """Started beside the data stages, the `-k cuda` cases keep running while the lease does CPU
    work, are stopped at the time given (their whole process group), and their output goes into
    lease.log, not beside it; none of their files stays in the project folder."""
    root = project_copy(tmp_path / "project")
    out = tmp_path / "out"
    out.mkdir()
    (out / "lease.log").write_text("")
    tests = L._start_cuda_tests(root, out)
    assert tests[0].poll() is None  # running, in the background
    checks = L._end_cuda_tests(tests, out, until=time.time() + 120)
    assert re.fullmatch(r"\d+ skipped", checks["cuda_tests"]), checks  # no GPU here: all nine skip
    log_text = (out / "lease.log").read_text()
    assert "pytest" in log_text and "skipped" in log_text.lower()
    assert not list((root / ".skunet-state").glob("cuda-tests*"))
    stopped = L._end_cuda_tests(L._start_cuda_tests(root, out), out, until=time.time() + 1)
    assert stopped["cuda_tests"].endswith("; stopped at the end of its time (see lease.log)"), stopped
    assert "(stopped after" in (out / "lease.log").read_text()


def test_on_a_gpu_the_cuda_cases_run_beside_the_data_stages_and_end_before_the_first_training(
        tmp_path, mirror, monkeypatch):
    """The lease's own order where torch sees a GPU (faked here in this process alone: the stages
    and the test cases, in processes of their own, run on the CPU, where the nine cases skip):
    the benchmark, then the test cases started before the data stages and ended before the first
    training, their output in lease.log ahead of the training's, their outcome in the manifest."""
    import torch

    monkeypatch.setenv("SKUNET_DATA_MIRROR", str(mirror))
    machine = project_copy(tmp_path / "machine")
    params = deep_merge(yaml.safe_load((machine / "params.yaml").read_text()), TINY)
    params["models"]["unet"]["base_width"] = 256  # an epoch of minutes on a CPU: the deadline cuts it
    (machine / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (machine / L.RECORD).unlink()  # no training committed: DRIVE's data stages run
    subprocess.run([*GIT, "commit", "-qam", "tiny profile, wide U-Net"], cwd=machine, check=True)
    cpu = L.diagnostics()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(L, "diagnostics", lambda: {**cpu, "device": "a GPU"})
    monkeypatch.setattr(L, "_benchmark", lambda root, out, until: {"benchmark": "not run here"})
    started = []
    real_start = L._start_cuda_tests
    monkeypatch.setattr(L, "_start_cuda_tests", lambda root, out: started.append(time.time()) or real_start(root, out))
    out = tmp_path / "out"
    manifest = L.lease(machine, 90, out, [], reserve_s=0)
    piece = manifest["pieces"][-1]
    assert re.fullmatch(r"\d+ skipped", piece["cuda_tests"]), piece
    assert piece["stage_seconds"]["data"] > 0 and started, piece
    log_text = (out / "lease.log").read_text()
    data, tests, train = (log_text.index(s) for s in ("repro augment@drive", "-k cuda", "repro train@drive-unet"))
    assert tests < train and data < train, log_text[:3000]
    assert not list((machine / ".skunet-state").glob("cuda-tests*"))


def test_a_later_piece_on_the_same_device_does_not_run_the_cuda_cases_again():
    pieces = [{"device": "NVIDIA H200", "cuda_tests": "9 passed"}, {"device": "NVIDIA H200"}]
    assert L._cuda_tests_ran({"pieces": pieces}, "NVIDIA H200") == "9 passed"
    assert L._cuda_tests_ran({"pieces": pieces}, "NVIDIA H100") is None  # another device
    partly = "3 passed; stopped at the end of its time (see lease.log)"  # a second try would end there too
    pieces[0]["cuda_tests"] = partly
    assert L._cuda_tests_ran({"pieces": pieces}, "NVIDIA H200") == partly
    for said in ("none ended; stopped at the end of its time (see lease.log)",
                 "8 passed, 1 failed; exit 1 (see lease.log)", "8 passed, 1 error; exit 1 (see lease.log)"):
        pieces[0]["cuda_tests"] = said
        assert L._cuda_tests_ran({"pieces": pieces}, "NVIDIA H200") is None, said


def test_a_third_piece_names_what_the_piece_that_ran_the_cuda_cases_said():
    """A piece that skipped them is passed over, so its own words are not said again with more after."""
    pieces = [{"device": "NVIDIA H200", "cuda_tests": "9 passed"},
              {"device": "NVIDIA H200", "cuda_tests": "9 passed in an earlier piece on NVIDIA H200"},
              {"device": "NVIDIA H200"}]
    assert L._cuda_tests_ran({"pieces": pieces}, "NVIDIA H200") == "9 passed"
    assert L._cuda_tests_ran({"pieces": pieces[1:]}, "NVIDIA H200") is None  # only the skip is left


def test_a_later_piece_on_the_same_device_does_not_run_a_finished_benchmark_again():
    pieces = [{"device": "NVIDIA H200", "benchmark": "benchmark-drive.json"}, {"device": "NVIDIA H200"}]
    assert L._benchmark_ran({"pieces": pieces}, "NVIDIA H200") == "benchmark-drive.json"
    assert L._benchmark_ran({"pieces": pieces}, "NVIDIA H100") is None  # another device
    assert L._benchmark_ran({"pieces": pieces[1:]}, "NVIDIA H200") is None  # the piece's own entry is not earlier
    for said in ("benchmark-drive.json: unet only (stopped at the end of its time)",
                 "no model measured (exit 1)"):
        pieces[0]["benchmark"] = said
        assert L._benchmark_ran({"pieces": pieces}, "NVIDIA H200") is None, said


def _cwd(proc: Path) -> Path | None:
    try:
        return (proc / "cwd").resolve()
    except OSError:
        return None


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_the_cuda_cases_outcomes_are_read_from_pytest_lines_with_or_without_xdist():
    text = ("tests/test_models.py::a[cuda-unet] PASSED [ 11%]\n"
            "tests/test_training.py::b[skunet-cuda] \n"  # xdist: a case starting
            "[gw1] [ 22%] PASSED tests/test_training.py::b[skunet-cuda] \n"
            "[gw2] [ 33%] FAILED tests/test_training.py::c[cuda] \n"
            "tests/test_models.py::d[cuda] SKIPPED (needs a CUDA device) [ 44%]\n"
            "FAILED tests/test_training.py::c[cuda] - AssertionError: ...\n")
    assert L._test_outcomes(text) == "2 passed, 1 failed, 1 skipped"
    assert L._test_outcomes("bringing up nodes...\n") == "none ended"


def test_a_machine_without_python_on_its_path_gets_a_wrapper_that_goes_when_the_process_does(tmp_path):
    """dvc.yaml's commands call `python`; where the PATH has only `python3` (a GPU image), the
    lease puts a wrapper for its own interpreter first on the PATH, and leaves no folder behind."""
    script = ("import os, subprocess\nfrom skunet import lease\n"
              "env = lease._python_on_path()\n"
              "print(env['PATH'].split(os.pathsep)[0])\n"
              "print(subprocess.run(['python', '-c', 'import sys; print(sys.executable)'],"
              " env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip())\n")
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PATH": str(tmp_path)},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    folder, interpreter = result.stdout.split()
    assert interpreter == sys.executable
    assert Path(folder).name.startswith("skunet-python-") and not Path(folder).exists()


def _kept(root: Path, trainings: dict[str, dict], pieces: list[dict] | None = None) -> dict:
    """A folder where a lease ran before: its kept manifest with `trainings`."""
    manifest = {"pieces": pieces if pieces is not None else [{"device": "CPU (2 threads)"}], "trainings": {
        t: {"epochs_done": 2, "epoch_seconds": [1.0, 1.0], "device": "CPU (2 threads)", **e} for t, e in trainings.items()}}
    (root / ".skunet-state").mkdir(parents=True, exist_ok=True)
    (root / ".skunet-state" / "lease.json").write_text(json.dumps(manifest))
    return manifest


def _members(out: Path) -> list[str]:
    data = b"".join(p.read_bytes() for p in sorted(out.glob("pieces.tar.[0-9][0-9]")))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_every_piece_carries_each_resume_state_in_progress_whether_the_lease_went_on_with_it_or_not(tmp_path):
    """A lease whose time is up before it reaches a training in progress (or one given its own
    folder as --take) still packs that training's resume state: the next one goes on from it."""
    machine = project_copy(tmp_path / "machine")
    _kept(machine, {"drive-skunet": {"status": "in progress"}})
    state = _state(machine / ".skunet-state" / "drive-skunet.pt", 2)
    out = tmp_path / "out"
    manifest = L.lease(machine, 1.0, out, [], reserve_s=0.9)  # no time for anything
    assert manifest["pieces"][-1]["finished"] == [] and manifest["trainings"]["drive-skunet"]["epochs_done"] == 2
    assert _members(out) == [".skunet-state/drive-skunet.pt"]
    again = L.lease(machine, 1.0, out, [out], reserve_s=0.9)  # its own folder given back to it
    assert _members(out) == [".skunet-state/drive-skunet.pt"] and len(again["pieces"]) == 3
    home = project_copy(tmp_path / "home")
    L.take(out, home)
    assert (home / ".skunet-state" / "drive-skunet.pt").read_bytes() == state


def test_older_pieces_do_not_roll_a_folder_back(tmp_path, monkeypatch, caplog):
    """Pieces that a later lease went on from (the first of those this folder has): `skunet take`
    refuses them, writing nothing; a lease given them with --take (the same command again after
    a stop) goes on from the folder's own, newer pieces."""
    out = _leased(tmp_path, monkeypatch)
    first = json.loads((out / L.MANIFEST).read_text())
    home = tmp_path / "home"
    _kept(home, {"drive-unet": {"status": "finished"}, "drive-skunet": {"status": "in progress"}},
          pieces=[*first["pieces"], {"device": "CPU (2 threads)"}])
    newer = _state(home / ".skunet-state" / "drive-skunet.pt", 3)
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    with pytest.raises(SkunetError, match=r"out: older pieces than this checkout's \(its 1 are the first of the 2 in"
                                          r" .skunet-state/lease.json, which a later lease went on from\); take the"
                                          r" newest folder"):
        L.take(out, home)
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
    # the same pieces again, or others, are taken
    assert L._kept_after(home, {"pieces": [*first["pieces"], {"device": "CPU (2 threads)"}]}) is None
    assert L._kept_after(home, {"pieces": [{"device": "elsewhere"}]}) is None

    machine = project_copy(tmp_path / "machine")
    _kept(machine, {"drive-skunet": {"status": "in progress"}}, pieces=[*first["pieces"], {"device": "CPU"}])
    newer = _state(machine / ".skunet-state" / "drive-skunet.pt", 3)
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        manifest = L.lease(machine, 1.0, tmp_path / "out2", [out], reserve_s=0.9)
    assert f"{out}: its pieces are the first 1 of this folder's 2: going on from this folder's" in caplog.text
    assert len(manifest["pieces"]) == 3 and "drive-unet" not in manifest["trainings"]
    assert (machine / ".skunet-state" / "drive-skunet.pt").read_bytes() == newer


def test_an_error_in_a_lease_still_packs_what_finished_then_says_it(tmp_path):
    """A damaged resume state (or a full disk) half-way: what finished before it travels home,
    and the error is said in one line after the packing."""
    machine = project_copy(tmp_path / "machine")
    _kept(machine, {"drive-unet": {"status": "finished"}})
    md5 = _fake_run(machine, "drive-unet", b"weights")
    (machine / ".skunet-state" / "drive-unet_dropblock.pt").write_bytes(b"junk")
    out = tmp_path / "out"
    with pytest.raises(SkunetError, match="drive-unet_dropblock.pt"):
        L.lease(machine, 60, out, [])
    manifest = json.loads((out / L.MANIFEST).read_text())
    piece = manifest["pieces"][-1]
    assert piece["finished"] == ["drive-unet"] and "drive-unet_dropblock.pt" in piece["error"] and piece["sha256"]
    assert f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}" in _members(out)
    assert not (machine / ".skunet-state" / "running.json").exists()


def test_a_signal_while_packing_waits_until_the_pieces_are_whole(tmp_path, monkeypatch):
    from skunet.errors import _raise_terminated

    machine = project_copy(tmp_path / "machine")
    _kept(machine, {"drive-skunet": {"status": "in progress"}})
    state = _state(machine / ".skunet-state" / "drive-skunet.pt", 2)
    pack = L._pack

    def pack_killed_half_way(*args):
        os.kill(os.getpid(), signal.SIGTERM)  # a job scheduler's limit, as the parts are written
        time.sleep(0.2)
        return pack(*args)

    monkeypatch.setattr(L, "_pack", pack_killed_half_way)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with pytest.raises(L.Terminated):
            L.lease(machine, 1.0, tmp_path / "out", [], reserve_s=0.9)
    finally:
        signal.signal(signal.SIGTERM, previous)
    monkeypatch.setattr(L, "_pack", pack)
    assert json.loads((tmp_path / "out" / L.MANIFEST).read_text())["pieces"][-1]["interrupted"] == "SIGTERM"
    home = project_copy(tmp_path / "home")
    L.take(tmp_path / "out", home)  # every part there, as its manifest records
    assert (home / ".skunet-state" / "drive-skunet.pt").read_bytes() == state


def test_a_lease_stops_what_a_lease_killed_outright_left_running_and_refuses_to_run_beside_one(tmp_path, caplog):
    running = tmp_path / ".skunet-state" / "running.json"
    running.parent.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    elsewhere = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a group not of this folder
    running.write_text(json.dumps({"lease": gone.pid, "group": elsewhere.pid}))
    L._stop_orphans(tmp_path)
    assert elsewhere.poll() is None and not running.exists()
    elsewhere.kill()
    stage = subprocess.Popen(["sleep", "60"], start_new_session=True, cwd=tmp_path)
    running.write_text(json.dumps({"lease": gone.pid, "group": stage.pid}))
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        L._stop_orphans(tmp_path)
    assert stage.wait(5) is not None and not running.exists()
    assert f"left running here (process group {stage.pid})" in caplog.text
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "lease"])
    try:
        while b"time.sleep" not in _cmdline(Path(f"/proc/{other.pid}")):  # started
            time.sleep(0.05)
        running.write_text(json.dumps({"lease": other.pid, "group": other.pid}))
        with pytest.raises(SkunetError, match=rf"a lease runs in this folder \(process {other.pid}\); wait for it"):
            L._stop_orphans(tmp_path)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_lease_and_take_want_this_project_whole_and_an_out_folder_before_writing(tmp_path, monkeypatch):
    """A folder with another pipeline, a copy without its hidden files (.dvc/), a file as --out:
    one line each, and nothing written."""
    out = _leased(tmp_path, monkeypatch)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def skunet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "skunet", *args], cwd=cwd, capture_output=True, text=True, env=env)

    other = tmp_path / "other"
    other.mkdir()
    (other / "dvc.yaml").write_text("stages:\n  build:\n    cmd: make\n")
    result = skunet("take", str(out), cwd=other)
    assert result.returncode == 2 and result.stderr == (f"error: {other / 'dvc.yaml'}: not this project's pipeline (no"
                                                        " augment and train stages); run it in the project folder, a"
                                                        " clone or a copy of it\n")
    assert sorted(p.name for p in other.iterdir()) == ["dvc.yaml"]
    copy = project_copy(tmp_path / "copy")
    shutil.rmtree(copy / ".dvc")
    result = skunet("lease", "--budget", "60", "--out", str(tmp_path / "o"), cwd=copy)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {copy / '.dvc'}: not there; copy the whole")
    (tmp_path / "o").write_text("")
    (copy / ".dvc").mkdir()
    result = skunet("lease", "--budget", "60", "--out", str(tmp_path / "o"), "--take", str(out), cwd=copy)
    assert result.returncode == 2 and result.stderr == f"error: --out {tmp_path / 'o'}: a file, not a folder; give a new or empty folder\n"
    assert not (copy / ".skunet-state").exists() and not (copy / ".dvc" / "cache").exists()
    with (copy / "params.yaml").open("a") as fh:  # a key given twice: one line, not a traceback
        fh.write("base:\n  seed: 1\n")
    result = skunet("take", str(out), cwd=copy)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "params.yaml" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (copy / ".skunet-state").exists() and not (copy / ".dvc" / "cache").exists()


def test_a_lease_whose_stage_fails_says_why_in_its_last_line_and_exits_1(tmp_path):
    """A damaged archive on the machine: the data stage's own error ends the lease's line, and
    the exit status is 1, not the 0 of a lease that ran as far as its time allowed."""
    machine = project_copy(tmp_path / "machine")
    (machine / L.RECORD).unlink()  # no training committed: the lease starts with DRIVE's data
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "DRIVE.zip").write_bytes(b"not the archive")
    result = subprocess.run([sys.executable, "-m", "skunet", "lease", "--budget", "120", "--out", "../my out"],
                            cwd=machine, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "SKUNET_DATA_MIRROR": str(mirror),
                                 "DVC_NO_ANALYTICS": "1"})
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\.\./my out: 0 of 6 trainings finished, data stages of drive failed \(exit \d+: .*DRIVE\.zip.*\)"
                        r" \(\d+ s\); bring back its files and run `skunet take '\.\./my out'`", last), last
    assert json.loads((tmp_path / "my out" / L.MANIFEST).read_text())["pieces"][-1]["error"].startswith(
        "data stages of drive failed")


def _run_entry(root: Path, training: str, lr: float, payload: bytes, age: float) -> Path:
    """A run-cache entry of `training` made with learning rate `lr`, `age` seconds old."""
    md5 = hashlib.md5(payload).hexdigest()
    obj = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(payload)
    dataset, model = training.split("-", 1)
    entry = root / ".dvc" / "cache" / "runs" / "cd" / ("cd" + "1" * 62) / hashlib.sha256(payload).hexdigest()
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(yaml.safe_dump({"cmd": f"python stages/train.py {dataset} {model}",
                                     "params": {"params.yaml": {f"models.{model}": {"lr": lr}}},
                                     "outs": [{"path": f"models/{dataset}/{model}.pt", "md5": md5}]}))
    os.utime(entry, (time.time() - age, time.time() - age))
    return entry


def test_a_lease_packs_the_run_of_its_folders_parameters_not_the_newest(tmp_path):
    """Parameters edited and edited back: the run cache holds the run of each, and the one that
    `dvc repro` at home restores is the run of the parameters the folder has now."""
    machine, out = tmp_path / "machine", tmp_path / "out"
    (machine / "params.yaml").parent.mkdir(parents=True)
    (machine / "params.yaml").write_text("models:\n  unet:\n    lr: 0.003\n")
    here = _run_entry(machine, "drive-unet", 0.003, b"weights at 3e-3", age=60)
    _run_entry(machine, "drive-unet", 0.002, b"weights at 2e-3", age=0)  # newer, of an edit since undone
    out.mkdir()
    L._pack(machine, out, ["drive-unet"], [])
    assert here.relative_to(machine).as_posix() in _members(out)
    assert not any("2e-3" in m for m in _members(out)) and len(_members(out)) == 2


def test_parameters_equal_in_value_but_of_another_kind_differ_as_dvc_hashes_them(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  common:\n    min_lr: 0\n")
    entry = {"params": {"params.yaml": {"train.common": {"min_lr": 0.0}}}}
    assert other_inputs(tmp_path, entry) == ["params.yaml:train.common"]
    (tmp_path / "params.yaml").write_text("train:\n  common:\n    min_lr: 0.0\n")
    assert other_inputs(tmp_path, entry) == []
    assert not same_value(True, 1) and same_value({"a": [1, 2.0]}, {"a": [1, 2.0]})


def test_a_damaged_resume_state_is_not_packed_and_one_in_the_pieces_is_left_out_at_home(tmp_path, caplog):
    """It would travel from piece to piece and stop every `take` and lease after it."""
    machine = tmp_path / "machine"
    _kept(machine, {"drive-skunet": {"status": "in progress"}, "chase-unet": {"status": "in progress"}})
    _state(machine / ".skunet-state" / "drive-skunet.pt", 2)
    (machine / ".skunet-state" / "chase-unet.pt").write_bytes(_state(tmp_path / "x.pt", 2)[:1000])  # cut short
    manifest = json.loads((machine / ".skunet-state" / "lease.json").read_text())
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        states = L._resumable(machine, manifest)
    assert states == ["drive-skunet"] and "chase-unet" not in manifest["trainings"]
    assert "chase-unet: its resume state is damaged: not packed, the training starts over" in caplog.text

    # a lease from before this check packed one: take leaves it out and says so, the rest is taken
    L._pack(machine, out, [], ["drive-skunet", "chase-unet"])
    manifest = json.loads((machine / ".skunet-state" / "lease.json").read_text())
    (out / L.MANIFEST).write_text(json.dumps(manifest))
    home = tmp_path / "home"
    home.mkdir()
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        taken = L.take(out, home)
    assert "chase-unet: its resume state among the pieces is damaged" in caplog.text
    assert "chase-unet" not in taken["trainings"] and not (home / ".skunet-state" / "chase-unet.pt").exists()
    assert (home / ".skunet-state" / "drive-skunet.pt").is_file()


def _taken_once(tmp_path: Path, epochs: int) -> tuple[Path, Path]:
    """A lease's folder holding drive-skunet in progress after `epochs` epochs, and a checkout that
    took it once: (the folder, the checkout)."""
    machine, out, home = tmp_path / "machine", tmp_path / "out", tmp_path / "home"
    _kept(machine, {"drive-skunet": {"status": "in progress"}})
    _state(machine / ".skunet-state" / "drive-skunet.pt", epochs)
    out.mkdir()
    L._pack(machine, out, [], ["drive-skunet"])
    (out / L.MANIFEST).write_text((machine / ".skunet-state" / "lease.json").read_text())
    home.mkdir()
    L.take(out, home)
    return out, home


def test_taking_a_folder_again_keeps_a_resume_state_that_went_on_here(tmp_path, caplog):
    out, home = _taken_once(tmp_path, epochs=2)
    further = _state(home / ".skunet-state" / "drive-skunet.pt", 3)  # `dvc repro` here went on by an epoch
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        taken = L.take(out, home)
    assert (home / ".skunet-state" / "drive-skunet.pt").read_bytes() == further
    assert taken["trainings"]["drive-skunet"]["epochs_done"] == 3
    assert "drive-skunet: this checkout's resume state is further on (3 epochs, the pieces' 2): kept" in caplog.text


def test_a_lease_names_itself_running_from_its_start_and_the_out_folder_is_checked_first(tmp_path):
    machine = project_copy(tmp_path / "machine")
    L.lease(machine, 1.0, tmp_path / "out", [], reserve_s=0.9)
    assert not (machine / ".skunet-state" / "running.json").exists()  # gone at its end
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "lease"])
    try:
        while b"time.sleep" not in _cmdline(Path(f"/proc/{other.pid}")):
            time.sleep(0.05)
        # a lease still in its first minute (diagnostics, the GPU's checks): no stage yet
        (machine / ".skunet-state" / "running.json").write_text(json.dumps({"lease": other.pid, "group": None}))
        with pytest.raises(SkunetError, match=rf"a lease runs in this folder \(process {other.pid}\)"):
            L.lease(machine, 60, tmp_path / "out2", [])
        assert not (tmp_path / "out2").exists()
    finally:
        other.kill()
        other.wait()
    (tmp_path / "afile").write_text("")
    with pytest.raises(SkunetError, match=r"--out .*afile/sub: .*afile is a file, not a folder"):
        L.lease(machine, 60, tmp_path / "afile" / "sub", [])


def test_a_lease_refuses_an_out_folder_inside_the_pipeline_before_writing(tmp_path):
    """`dvc repro augment@drive` in the lease would delete a --out inside data/augmented/drive."""
    machine = project_copy(tmp_path / "machine")
    result = subprocess.run([sys.executable, "-m", "skunet", "lease", "--budget", "1", "--reserve", "0.9", "--out",
                             "data/augmented/drive"], cwd=machine, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2 and result.stderr.startswith("error: --out data/augmented/drive: inside data/,")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (machine / "data").exists() and not (machine / ".skunet-state").exists()


def test_a_full_disk_while_packing_leaves_the_earlier_pieces_whole_and_keeps_what_the_lease_did(tmp_path, monkeypatch):
    import errno

    out = _leased(tmp_path, monkeypatch)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    machine = project_copy(tmp_path / "machine")
    _kept(machine, {"drive-skunet": {"status": "in progress"}})
    _state(machine / ".skunet-state" / "drive-skunet.pt", 2)
    write_bytes = Path.write_bytes

    def full(self, data):
        if "pieces.tar.0" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as raised:
        L.lease(machine, 1.0, out, [], reserve_s=0.9)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    assert raised.value.filename == str(out / "pieces.tar.00")
    assert {p.name: p.read_bytes() for p in out.glob("pieces.tar.*")} == \
        {k: v for k, v in before.items() if k.startswith("pieces.tar.")}
    assert json.loads((out / L.MANIFEST).read_text()) == json.loads(before[L.MANIFEST])
    assert not list(out.glob(".pieces.tar.*"))
    L.take(out, tmp_path / "home")  # the earlier pieces, as they were
    kept = json.loads((machine / ".skunet-state" / "lease.json").read_text())
    assert len(kept["pieces"]) == 2 and "No space left" in kept["pieces"][-1]["error"]
    assert kept["pieces"][-1]["sha256"] is None and "drive-skunet" in kept["trainings"]
    assert not (machine / ".skunet-state" / "running.json").exists()


_LEASE_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from skunet import lease as L
from skunet.errors import exit_on_error
{patch}
exit_on_error(lambda: L.lease(Path(sys.argv[1]), 60, Path(sys.argv[2]), [], reserve_s=1))()
"""


def _lease_patched(patch: str, machine: Path, out: Path) -> subprocess.CompletedProcess:
    """A lease in a process of its own, with `patch` run in it first (_LEASE_SCRIPT)."""
    return subprocess.run([sys.executable, "-c", _LEASE_SCRIPT.format(patch=patch), str(machine), str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def test_a_second_sigterm_before_packing_waits_until_the_pieces_are_whole(tmp_path):
    """A scheduler that sends SIGTERM again while the training stops: the default of a second
    SIGTERM (stop at once) left nothing packed."""
    machine = project_copy(tmp_path / "machine")
    _kept(machine, {"drive-skunet": {"status": "in progress"}})
    _state(machine / ".skunet-state" / "drive-skunet.pt", 2)
    patch = ("def twice():\n    try:\n        os.kill(os.getpid(), signal.SIGTERM); time.sleep(2)\n"
             "    finally:\n        os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.2)\nL.diagnostics = twice\n")
    result = _lease_patched(patch, machine, tmp_path / "out")
    assert result.returncode == 143, result.stderr[-2000:]
    assert "interrupted; packed 0 finished trainings" in result.stderr
    piece = json.loads((tmp_path / "out" / L.MANIFEST).read_text())["pieces"][-1]
    assert piece["interrupted"] == "SIGTERM" and piece["sha256"]
    assert _members(tmp_path / "out") == [".skunet-state/drive-skunet.pt"]
    assert not (machine / ".skunet-state" / "running.json").exists()


def test_a_sigterm_in_a_leases_first_seconds_is_one_line_and_leaves_nothing_half_done(tmp_path):
    """Cut into torch's import, a signal left its exit hooks printing ("FakeTensor cache stats:"),
    and a lease named running with nothing packed."""
    machine = project_copy(tmp_path / "machine")
    patch = ("import threading\nthreading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
             "assert 'torch' not in sys.modules\n")
    result = _lease_patched(patch, machine, tmp_path / "out")
    assert result.returncode == 143, result.stderr[-2000:]
    assert result.stderr.startswith("terminated (SIGTERM)") and len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists() and not (machine / ".skunet-state").exists()


def test_take_refuses_the_parts_of_an_earlier_lease_under_a_manifest_that_does_not_record_them(tmp_path, monkeypatch):
    """A lease stopped outright (SIGKILL) in a folder an earlier lease wrote: its manifest, written
    at its start, names no parts, and the parts are the earlier lease's."""
    out = _leased(tmp_path, monkeypatch)
    earlier = json.loads((out / L.MANIFEST).read_text())
    machine = project_copy(tmp_path / "machine")

    def killed(*args):
        raise SystemExit(137)

    monkeypatch.setattr(L, "_pack_and_keep", killed)
    with pytest.raises(SystemExit):
        L.lease(machine, 1.0, out, [], reserve_s=0.9)
    assert json.loads((out / L.MANIFEST).read_text())["pieces"][-1]["sha256"] is None
    with pytest.raises(SkunetError, match=r"out: its last lease packed nothing \(stopped outright, or its packing"
                                          r" failed: see its lease.log\), so its pieces.tar parts are an earlier lease's"):
        L.take(out, tmp_path / "home")
    # so is a last piece written without the record (a lease from before it), after pieces with it
    earlier["pieces"].append({"device": "CPU (2 threads)"})
    (out / L.MANIFEST).write_text(json.dumps(earlier))
    with pytest.raises(SkunetError, match=r"out: its last lease packed nothing"):
        L.take(out, tmp_path / "home")
    assert list((tmp_path / "home").iterdir()) == []


def test_take_refuses_a_folder_where_a_lease_runs(tmp_path, monkeypatch):
    out, home = _leased(tmp_path, monkeypatch), tmp_path / "home"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "lease"])
    try:
        while b"time.sleep" not in _cmdline(Path(f"/proc/{other.pid}")):
            time.sleep(0.05)
        (home / ".skunet-state").mkdir()
        (home / ".skunet-state" / "running.json").write_text(json.dumps({"lease": other.pid, "group": None}))
        with pytest.raises(SkunetError, match=rf"home: a lease runs in this folder \(process {other.pid}\); wait"):
            L.take(out, home)
        assert [p.name for p in (home / ".skunet-state").iterdir()] == ["running.json"]
    finally:
        other.kill()
        other.wait()
    L.take(out, home)  # a lease that is gone is no obstacle


def test_taking_a_folder_again_leaves_alone_a_training_that_finished_here_since(tmp_path, caplog):
    from skunet.checkpoints import write_log

    out, home = _taken_once(tmp_path, epochs=1)
    # `dvc repro` here finished it: the resume state is gone, dvc.lock records the model
    (home / ".skunet-state" / "drive-skunet.pt").unlink()
    (home / "models" / "drive").mkdir(parents=True)
    (home / "models" / "drive" / "skunet.pt").write_bytes(b"weights")
    write_log(home / "plots" / "train" / "drive" / "skunet.csv",
              [{"epoch": e, "train_loss": 0.5, "val_loss": 0.5, "val_f1": 0.5, "lr": 1e-3, "seconds": 1.0,
               "peak_mib": 1.0} for e in range(1, 7)])
    (home / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train@drive-skunet": {
        "cmd": "python stages/train.py drive skunet",
        "outs": [{"path": "models/drive/skunet.pt", "md5": hashlib.md5(b"weights").hexdigest()}]}}}))
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        taken = L.take(out, home)
    assert not (home / ".skunet-state" / "drive-skunet.pt").exists()
    assert taken["trainings"]["drive-skunet"]["status"] == "finished"
    assert taken["trainings"]["drive-skunet"]["epochs_done"] == 6
    assert "drive-skunet: finished in this checkout since (dvc.lock)" in caplog.text
    (home / "models" / "drive" / "skunet.pt").write_bytes(b"other weights")  # not the model dvc.lock records
    assert L.take(out, home)["trainings"]["drive-skunet"]["status"] == "in progress"
    assert (home / ".skunet-state" / "drive-skunet.pt").is_file()
    (home / "dvc.lock").write_bytes(b"\xff\xfe stages")  # not UTF-8: one line, no traceback
    with pytest.raises(SkunetError, match=r"dvc.lock: .*; restore it with `git checkout dvc.lock`$"):
        L.take(out, home)


def test_take_says_when_the_pieces_do_not_continue_those_taken_here(tmp_path, monkeypatch, caplog):
    out, home = _leased(tmp_path, monkeypatch), tmp_path / "home"
    _kept(home, {}, pieces=[{"device": "another lease's"}])
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        L.take(out, home)
    assert "out: these pieces do not continue the ones taken here" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        L.take(out, home)  # the same again
    assert "do not continue" not in caplog.text


def test_a_signal_once_the_work_is_over_waits_for_the_packing():
    """A first SIGTERM raised between the trainings' end and the packing ended the lease unpacked;
    disarmed, it is only noted (the lease packs, then stops for it). Armed, it stops the work."""
    from skunet.errors import Terminated

    with L._later_signals_wait() as signals:
        signals["armed"] = False
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert signals["came"] == [signal.SIGTERM]
    with pytest.raises(Terminated), L._later_signals_wait():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
