"""skunet lease in a fresh clone of a commit that holds a partial run: the trainings its record
holds (reports/pieces.json, dvc.lock, metrics/) from this very code and parameters are not
trained again, the others are; `skunet take` leaves the committed ones as they are."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import project_copy
from skunet import lease as L
from skunet.config import deep_merge, parse_yaml
from skunet.recorded import file_md5, folder_md5
from test_lease import GIT, TINY, _clone, _fake_run, _members, _metrics, _run

DEVICE = "GPU X"


def _as_committed(root: Path, trainings: tuple[str, ...]) -> dict:
    """Make the checkout at `root` record `trainings` as a run taken home and committed does:
    dvc.lock's train entries of this checkout's train stage, code (DVC's md5) and parameters, its
    evaluate entries with the metrics files they wrote, and reports/pieces.json listing them
    finished (chase-unet_dropblock in progress beside them). Returns that manifest."""
    stage = parse_yaml((root / "dvc.yaml").read_text())["stages"]["train"]
    params = json.loads(json.dumps(parse_yaml((root / "params.yaml").read_text())))  # plain types
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for training in trainings:
        dataset, model = training.split("-", 1)
        fill = lambda text: text.replace("${item.dataset}", dataset).replace("${item.model}", model)
        deps = []
        for path in map(fill, stage["deps"]):
            md5 = ("1" * 32 + ".dir" if path.startswith("data/")  # another machine's data: not compared
                   else folder_md5(root, path) if (root / path).is_dir() else file_md5(root / path))
            deps.append({"path": path, "hash": "md5", "md5": md5})
        values = {}
        for key in map(fill, stage["params"]):
            value = params
            for part in key.split("."):
                value = value[part]
            values[key] = value
        weights = {"path": f"models/{dataset}/{model}.pt", "hash": "md5",
                   "md5": hashlib.md5(training.encode()).hexdigest()}
        lock["stages"][f"train@{training}"] = {"cmd": fill(stage["cmd"]), "deps": deps,
                                               "params": {"params.yaml": values}, "outs": [dict(weights)]}
        metrics = root / "metrics" / dataset / f"{model}.json"
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps({"paper": {"f1": 0.5}, "training": training}) + "\n")
        lock["stages"][f"evaluate@{training}"] = {
            "cmd": f"python stages/evaluate.py {dataset} {model}", "deps": [dict(weights)],
            "outs": [{"path": f"metrics/{dataset}/{model}.json", "hash": "md5", "md5": file_md5(metrics)}]}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    entry = {"epochs_done": 6, "epoch_seconds": [1.0] * 6, "peak_mib": 10.0, "device": DEVICE}
    record = {"pieces": [{"device": DEVICE, "numpy": "9.9", "opencv": "9.8", "albumentations": "9.7",
                          "sha256": {"pieces.tar.00": "0" * 64}, "files": ["pieces.tar.00"],
                          "finished": list(trainings), "in_progress": "chase-unet_dropblock"}],
              "trainings": {**{t: {"status": "finished", **entry} for t in trainings},
                            "chase-unet_dropblock": {**entry, "status": "in progress", "epochs_done": 2,
                                                     "epoch_seconds": [1.0, 1.0]}}}
    (root / L.RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _lease(root: Path, out: Path, caplog) -> dict:
    """A lease with no time to train: what it takes as committed, and what it would start first."""
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        return L.lease(root, 1.0, out, [], reserve_s=0.9)


def _statuses(manifest: dict) -> dict[str, str]:
    return {t: e["status"] for t, e in manifest["trainings"].items()}


def test_a_fresh_clone_goes_on_from_the_trainings_its_commit_records_and_packs_none_of_them(tmp_path, caplog):
    root = project_copy(tmp_path / "machine")
    committed = ("drive-unet", "drive-unet_dropblock", "drive-skunet", "chase-unet")
    record = _as_committed(root, committed)
    manifest = _lease(root, tmp_path / "out", caplog)
    for training in committed:
        dataset, model = training.split("-", 1)
        assert (f"{training}: finished and committed in this checkout (dvc.lock, metrics/{dataset}/{model}.json):"
                " not trained again") in caplog.text
    # the one in progress had its resume state in the pieces, which did not travel: it starts over
    assert _statuses(manifest) == {t: L.COMMITTED for t in committed}
    assert manifest["trainings"]["drive-unet"]["epoch_seconds"] == [1.0] * 6  # the record's, kept
    piece = manifest["pieces"][-1]
    assert manifest["pieces"][:-1] == record["pieces"] and piece["committed"] == list(committed)
    assert piece["finished"] == [] and piece["sha256"]
    assert "chase-unet_dropblock not started: the time is up" in caplog.text  # the first one left
    assert _members(tmp_path / "out") == []  # no run cache or model of them looked for, none packed
    assert json.loads((root / ".skunet-state" / "lease.json").read_text()) == manifest


def test_a_committed_training_made_from_other_code_parameters_or_stage_is_trained_again(tmp_path, caplog):
    root = project_copy(tmp_path / "machine")
    _as_committed(root, ("drive-unet", "drive-skunet"))
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(params.read_text()),
                                                {"models": {"skunet": {"lr": 0.002}}}), sort_keys=False))
    manifest = _lease(root, tmp_path / "out", caplog)
    assert ("drive-skunet: committed (dvc.lock), but made from other parameters than this checkout's"
            " (params.yaml:models.skunet): trained again") in caplog.text
    assert _statuses(manifest) == {"drive-unet": L.COMMITTED}
    assert "drive-unet_dropblock not started: the time is up" in caplog.text

    caplog.clear()
    model = root / "src" / "skunet" / "models" / "unet.py"
    model.write_text(model.read_text() + "# edited\n")
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        manifest = L._committed_record(root, {})
    assert ("drive-unet: committed (dvc.lock), but made from other code than this checkout's (src/skunet/models):"
            " trained again") in caplog.text
    assert ("drive-skunet: committed (dvc.lock), but made from other code and parameters than this checkout's"
            " (src/skunet/models, params.yaml:models.skunet): trained again") in caplog.text
    assert manifest == {"pieces": [], "trainings": {}}

    # a dependency dvc.yaml gives the train stage since, which no md5 of the recorded ones shows
    root = project_copy(tmp_path / "machine2")
    _as_committed(root, ("drive-unet",))
    dvc_yaml = root / "dvc.yaml"
    listed = "      - src/skunet/training.py\n"
    dvc_yaml.write_text(dvc_yaml.read_text().replace(listed, listed + "      - src/skunet/seeds.py\n", 1))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        assert L._committed_record(root, {})["trainings"] == {}
    assert ("drive-unet: committed (dvc.lock), but by another train stage than this checkout's dvc.yaml"
            " (dependencies): trained again") in caplog.text


def test_a_committed_training_whose_metrics_or_evaluation_do_not_match_dvc_lock_is_trained_again(tmp_path, caplog):
    root = project_copy(tmp_path / "machine")
    _as_committed(root, ("drive-unet", "drive-skunet", "chase-unet"))
    metrics = root / "metrics" / "drive" / "unet.json"
    metrics.write_text(metrics.read_text().replace("0.5", "0.6"))
    (root / "metrics" / "chase" / "unet.json").unlink()
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    lock["stages"]["evaluate@drive-skunet"]["deps"][0]["md5"] = "2" * 32  # it evaluated another model
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    manifest = _lease(root, tmp_path / "out", caplog)
    assert ("drive-unet: committed (dvc.lock), but metrics/drive/unet.json is not the file dvc.lock records for it"
            " (evaluate@drive-unet): trained again") in caplog.text
    assert ("chase-unet: committed (dvc.lock), but metrics/chase/unet.json is missing (evaluate@chase-unet):"
            " trained again") in caplog.text
    assert ("drive-skunet: committed (dvc.lock), but evaluate@drive-skunet evaluated another models/drive/skunet.pt"
            " than train@drive-skunet made: trained again") in caplog.text
    assert manifest["trainings"] == {} and manifest["pieces"][-1]["committed"] == []
    assert "drive-unet not started: the time is up" in caplog.text

    # listed finished, but dvc.lock has no entry of it; a damaged record: nothing taken as committed
    del lock["stages"]["train@drive-skunet"]
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="skunet.lease"):
        L._committed_record(root, {})
        (root / L.RECORD).write_text("{")
        assert L._committed_record(root, {}) == {"pieces": [], "trainings": {}}
    assert ("drive-skunet: listed finished in reports/pieces.json, but dvc.lock records no train@drive-skunet:"
            " trained again") in caplog.text
    assert "reports/pieces.json: not a lease's manifest (" in caplog.text


def test_a_later_lease_on_the_same_machine_checks_the_committed_ones_again(tmp_path, caplog):
    """A warm machine's next call goes on from .skunet-state/lease.json, committed trainings
    included, as long as this checkout's record still holds them (params.yaml edited between the
    calls, say)."""
    root = project_copy(tmp_path / "machine")
    _as_committed(root, ("drive-unet", "drive-skunet"))
    first = _lease(root, tmp_path / "out", caplog)
    assert _statuses(first) == {"drive-unet": L.COMMITTED, "drive-skunet": L.COMMITTED}
    caplog.clear()
    again = _lease(root, tmp_path / "out2", caplog)
    assert "going on from the 2 earlier pieces of this folder" in caplog.text
    assert _statuses(again) == _statuses(first) and "finished and committed" not in caplog.text
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("lr: 0.001", "lr: 0.002", 1))  # models.unet's
    caplog.clear()
    third = _lease(root, tmp_path / "out3", caplog)
    assert ("drive-unet: committed (dvc.lock), but made from other parameters than this checkout's"
            " (params.yaml:models.unet): trained again") in caplog.text
    assert _statuses(third) == {"drive-skunet": L.COMMITTED} and len(third["pieces"]) == 4


def test_take_accepts_committed_trainings_without_pieces_and_leaves_their_record_alone(tmp_path):
    home = project_copy(tmp_path / "home")
    committed = ("drive-unet", "drive-unet_dropblock", "drive-skunet", "chase-unet")
    record = _as_committed(home, committed)
    before = {p: (home / p).read_bytes() for p in ("dvc.lock", "metrics/drive/unet.json", "metrics/chase/unet.json")}
    machine, out = tmp_path / "machine", tmp_path / "out"
    _fake_run(machine, "chase-skunet", b"weights")
    out.mkdir()
    digests = L._pack(machine, out, ["chase-skunet"], [])
    entry = {"epochs_done": 6, "epoch_seconds": [1.0] * 6, "device": DEVICE}
    manifest = {"pieces": [*record["pieces"], {"device": DEVICE, "sha256": digests, "files": list(digests),
                                               "finished": ["chase-skunet"], "committed": list(committed)}],
                "trainings": {**{t: {**entry, "status": L.COMMITTED} for t in committed},
                              "chase-skunet": {**entry, "status": "finished"}}}
    (out / L.MANIFEST).write_text(json.dumps(manifest))
    taken = L.take(out, home)  # no pieces of the committed ones asked for
    assert _statuses(taken) == _statuses(manifest)
    assert {p: (home / p).read_bytes() for p in before} == before
    only_committed = {**taken, "trainings": {t: taken["trainings"][t] for t in committed}}
    how = L.adopt(home, only_committed)  # a copy without the predictions, which are in no commit
    assert how == {t: L.UNPREDICTED for t in committed}
    assert ("drive-unet, drive-unet_dropblock, drive-skunet, chase-unet: committed, but their predictions (DVC's, in"
            " no commit) are not in this checkout, and `dvc repro -s compare` reads them") in L.summary(taken, how)
    for training in committed:
        (home / "predictions" / training.replace("-", "/", 1)).mkdir(parents=True)
    assert L.adopt(home, only_committed) == {}
    text = L.summary(taken, {"chase-skunet": "run cache"})
    assert text.splitlines()[0] == ("5 of 6 trainings finished: chase-skunet in these pieces; drive-unet,"
                                    " drive-unet_dropblock, drive-skunet, chase-unet committed before (this"
                                    " checkout's dvc.lock and metrics, left as they are)")
    assert "committed (" not in text.split("\n", 1)[1] and "epochs done" not in text
    assert text.splitlines()[1:] == ["not yet trained: chase-unet_dropblock",
                                     "next: `dvc repro evaluate@chase-skunet && dvc repro -s compare` evaluates what is"
                                     " finished (then `skunet check --allow-missing`)"]
    # trained on the lease machine's own data: evaluated here as the machine made it, committed ones left out
    text = L.summary(taken, {"chase-skunet": "other data"})
    assert "next: `dvc repro -s evaluate@chase-skunet compare` evaluates the finished models here" in text

    # taken into a checkout whose record does not hold one of them: said, and not counted
    params = home / "params.yaml"
    params.write_text(params.read_text().replace("lr: 0.001", "lr: 0.002", 1))  # models.unet's
    how = L.adopt(home, only_committed)
    assert set(how) == {"drive-unet", "chase-unet"}
    text = L.summary(taken, how)
    assert text.startswith("3 of 6 trainings finished: chase-skunet in these pieces; drive-unet_dropblock,"
                           " drive-skunet committed before")
    assert ("drive-unet: the lease took it as committed, but this checkout's record does not hold it (made from"
            " other parameters than this checkout's (params.yaml:models.unet)), so `dvc repro` would train it again"
            " here; take the pieces into a clone of the commit the lease ran") in text


@pytest.mark.slow
def test_a_lease_in_a_fresh_clone_of_a_partial_run_trains_only_the_rest(tmp_path, mirror):
    """The paper run's situation at tiny size: four of the six trainings finished on a lent machine,
    taken home, evaluated and committed; their models and pieces are in no commit. A lease in a
    fresh clone of that commit trains the other two only (and draws no DRIVE data), and after
    `skunet take` and the command it prints, the six metrics are those of one uninterrupted run."""
    env = {"SKUNET_DATA_MIRROR": str(mirror)}
    template = project_copy(tmp_path / "template")
    params = yaml.safe_load((template / "params.yaml").read_text())
    (template / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, TINY), sort_keys=False))
    committed = ("drive-unet", "drive-unet_dropblock", "drive-skunet", "chase-unet")
    rest = ("chase-unet_dropblock", "chase-skunet")
    # whatever this checkout's own record holds: none of the rest's results
    for training in rest:
        dataset, model = training.split("-", 1)
        paths = [f"metrics/{dataset}/{model}.json", *(f"plots/{kind}/{dataset}/{model}.csv"
                                                      for kind in ("train", "roc", "pr", "per_image"))]
        subprocess.run([*GIT, "rm", "-q", "--ignore-unmatch", *paths], cwd=template, check=True)
    subprocess.run([*GIT, "commit", "-qam", "tiny profile"], cwd=template, check=True)

    # home: the four evaluated and compared, the pieces' manifest kept and committed with them; an
    # uninterrupted run of the other two beside it (the four are home's own, uninterrupted too)
    home = _clone(template, tmp_path / "home")
    _run(["dvc", "repro", *(f"evaluate@{t}" for t in committed)], home, env)
    _run(["dvc", "repro", "-s", "compare"], home, env)
    reference = _clone(template, tmp_path / "reference")
    _run(["dvc", "repro", *(f"evaluate@{t}" for t in rest)], reference, env)
    made = {f"metrics/{t.replace('-', '/', 1)}.json" for t in rest}
    expected = {**_metrics(home), **{k: v for k, v in _metrics(reference).items() if k in made}}
    assert len(expected) == 6
    record = json.loads(json.dumps({"pieces": [{"device": DEVICE, "sha256": {"pieces.tar.00": "0" * 64},
                                                "files": ["pieces.tar.00"], "finished": list(committed),
                                                "in_progress": "chase-unet_dropblock"}],
                                    "trainings": {t: {"status": "finished", "epochs_done": 6, "epoch_seconds": [],
                                                      "device": DEVICE} for t in committed}}))
    (home / L.RECORD).write_text(json.dumps(record, indent=1) + "\n")
    (home / ".skunet-state" / "lease.json").parent.mkdir(exist_ok=True)
    (home / ".skunet-state" / "lease.json").write_text(json.dumps(record))
    subprocess.run([*GIT, "add", "-A"], cwd=home, check=True)
    subprocess.run([*GIT, "commit", "-qm", "partial run: 4 of 6"], cwd=home, check=True)

    machine, out = _clone(home, tmp_path / "machine"), tmp_path / "out"
    result = _run(["skunet", "lease", "--budget", "900", "--reserve", "0", "--out", str(out)], machine, env)
    for training in committed:
        dataset, model = training.split("-", 1)
        assert (f"{training}: finished and committed in this checkout (dvc.lock, metrics/{dataset}/{model}.json):"
                " not trained again") in result.stderr
    manifest = json.loads((out / L.MANIFEST).read_text())
    piece = manifest["pieces"][-1]
    assert piece["finished"] == list(rest) and piece["committed"] == list(committed)
    assert set(piece["stage_seconds"]) == {"data", *rest}
    assert manifest["pieces"][:-1] == record["pieces"]
    assert not (machine / "data" / "raw" / "drive").exists()  # DRIVE's data stages not run
    assert "train.py drive" not in (out / "lease.log").read_text()
    assert len([m for m in _members(out) if m.startswith(".dvc/cache/runs/")]) == 2

    lock = lambda: yaml.safe_load((home / "dvc.lock").read_text())["stages"]
    kept = {s: e for s, e in lock().items() if s.split("@")[-1] in committed}
    before = _metrics(home)
    summary = _run(["skunet", "take", str(out)], home, env).stdout
    assert summary.splitlines()[0] == ("6 of 6 trainings finished: chase-unet_dropblock, chase-skunet in these"
                                       " pieces; drive-unet, drive-unet_dropblock, drive-skunet, chase-unet committed"
                                       " before (this checkout's dvc.lock and metrics, left as they are)"), summary
    assert {s: e for s, e in lock().items() if s in kept} == kept and _metrics(home) == before
    assert len(summary.splitlines()) == 2, summary  # the home that committed them has their predictions
    command = summary.splitlines()[1].removeprefix("next: `").split("`")[0]
    assert command == "dvc repro evaluate@chase-unet_dropblock evaluate@chase-skunet && dvc repro -s compare"
    repro = _run(["bash", "-c", command], home, env).stdout
    assert "Running stage 'train@" not in repro
    assert _metrics(home) == expected
    results = json.loads((home / "reports" / "results.json").read_text())
    assert results["missing"] == [], results["missing"]
    assert "A partial run" not in (home / "reports" / "report.md").read_text()
    check = subprocess.run(["skunet", "check", "--allow-missing"], cwd=home, capture_output=True, text=True)
    assert re.search(r"\d+/18 compared cells within tolerance .*; 0 missing", check.stdout), check.stdout[-2000:]
