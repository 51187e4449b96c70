"""The skunet command: check exits 0 within tolerance and 1 outside; the smoke workspace layout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from skunet.audit import PUBLISHED_AUDIT_JSON, format_audit_table
from skunet.cli import lay_out_workspace, main

PUBLISHED = yaml.safe_load((ROOT / "published" / "paper.yaml").read_text())


def record(work):
    """dvc.lock as `dvc repro` leaves it for the metrics files under `work`: each the output of
    its evaluate stage, run with this params.yaml's evaluate section."""
    evaluate = yaml.safe_load((work / "params.yaml").read_text())["evaluate"]
    stages = {}
    for path in sorted((work / "metrics").glob("*/*.json")):
        rel = path.relative_to(work).as_posix()
        stages[f"evaluate@{path.parent.name}-{path.stem}"] = {
            "cmd": f"python stages/evaluate.py {path.parent.name} {path.stem}",
            "params": {"params.yaml": {"evaluate": evaluate}},
            "outs": [{"path": rel, "hash": "md5", "md5": hashlib.md5(path.read_bytes()).hexdigest()}]}
    (work / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False))
    return work


def as_smoke(work):
    """The workspace's params.yaml of the smoke profile, as a smoke workspace's is."""
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["base"]["profile"] = "smoke"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def workspace(tmp_path, shift: float = 0.0):
    """params.yaml, published/paper.yaml and metrics equal to the published values (+ shift),
    recorded in dvc.lock."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "published").mkdir()
    shutil.copy(ROOT / "published" / "paper.yaml", tmp_path / "published" / "paper.yaml")
    for dataset in ("drive", "chase"):
        (tmp_path / "metrics" / dataset).mkdir(parents=True)
        for model, values in PUBLISHED[dataset].items():
            paper = {k: v for k, v in values.items()}
            if model == "skunet" and dataset == "drive":
                paper["f1"] += shift
            (tmp_path / "metrics" / dataset / f"{model}.json").write_text(
                json.dumps({"paper": paper, "fov": paper}))
    return record(tmp_path)


def test_check_passes_within_tolerance(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--workdir", str(workspace(tmp_path, shift=0.015))])
    assert exit_.value.code == 0
    assert "pass" in capsys.readouterr().out


def test_check_fails_when_a_metric_is_pushed_out_of_tolerance(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--workdir", str(workspace(tmp_path, shift=-0.05))])
    assert exit_.value.code == 1
    assert "FAIL" in capsys.readouterr().out



@pytest.mark.parametrize(("shift", "code"), [(0.015, 0), (-0.05, 1)])
def test_python_dash_m_skunet_is_the_same_command(tmp_path, shift, code):
    """`python -m skunet` (for machines where the console script is not installed) exits alike."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-m", "skunet", "check", "--workdir", str(workspace(tmp_path, shift))],
                            env=env, capture_output=True, text=True)
    assert result.returncode == code, result.stderr

def test_check_against_the_smoke_baseline_catches_an_all_background_model(tmp_path):
    """A model predicting only background (F1 0) must fail the committed smoke baseline."""
    baseline = yaml.safe_load((ROOT / "baselines" / "smoke.yaml").read_text())
    for dataset in ("drive", "chase"):
        (tmp_path / "metrics" / dataset).mkdir(parents=True)
        for model, values in baseline[dataset].items():
            assert values["f1"] - baseline["tolerances"]["f1"] > 0, "F1 0 would pass the gate"
            paper = dict(values)
            (tmp_path / "metrics" / dataset / f"{model}.json").write_text(json.dumps({"paper": paper}))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    record(tmp_path)
    # the tolerance gate alone, as in an environment other than the recorded one
    tolerance_only = tmp_path / "smoke.yaml"
    tolerance_only.write_text(yaml.safe_dump({k: v for k, v in baseline.items() if k not in ("environment", "exact")}))
    args = ["check", "--workdir", str(tmp_path), "--baseline", str(tolerance_only)]
    with pytest.raises(SystemExit) as ok:
        main(args)
    assert ok.value.code == 0
    broken = tmp_path / "metrics" / "chase" / "unet.json"
    broken.write_text(json.dumps({"paper": {**baseline["chase"]["unet"], "f1": 0.0}}))
    record(tmp_path)
    with pytest.raises(SystemExit) as bad:
        main(args)
    assert bad.value.code == 1


def test_smoke_workspace_is_the_project_with_the_override(tmp_path):
    lay_out_workspace(ROOT, tmp_path)
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert all((tmp_path / name).exists() for name in tracked if (ROOT / name).is_file())
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    smoke = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    assert params["base"]["profile"] == "smoke"
    assert params["resize"]["drive"]["input_size"] == smoke["resize"]["drive"]["input_size"]
    assert (tmp_path / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text()


def test_a_tiny_workspace_is_laid_out_and_committed_without_running(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    work = tmp_path / "tiny"
    assert main(["smoke", "--workdir", str(work), "--profile", "tiny", "--no-repro"]) == 0
    assert capsys.readouterr().out.startswith(f"tiny workspace laid out: {work}")
    params = yaml.safe_load((work / "params.yaml").read_text())
    tiny = yaml.safe_load((ROOT / "params.tiny.yaml").read_text())
    assert params["base"]["profile"] == "tiny" and params["models"]["skunet"]["depth"] == tiny["models"]["skunet"]["depth"]
    assert params["train"]["common"]["epochs"] == tiny["train"]["common"]["epochs"]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=work, capture_output=True, text=True, check=True)
    assert status.stdout == ""  # all committed: a clone of it is a machine of the README's recipe
    assert not (work / "data").exists()  # nothing ran


def test_check_fails_on_a_deleted_metrics_file_unless_the_run_is_declared_partial(tmp_path, capsys):
    work = workspace(tmp_path)
    (work / "metrics" / "chase" / "skunet.json").unlink()
    with pytest.raises(SystemExit) as strict:
        main(["check", "--workdir", str(work)])
    assert strict.value.code == 1
    assert "1 model(s) missing, FAIL" in capsys.readouterr().out
    with pytest.raises(SystemExit) as partial:
        main(["check", "--workdir", str(work), "--allow-missing"])
    assert partial.value.code == 0
    out = capsys.readouterr().out
    assert "1 model(s) missing, allowed (--allow-missing): a partial run" in out
    assert "- chase/skunet: f1, accuracy, auc not reproduced" in out


def test_check_against_a_baseline_recorded_here_holds_every_number(tmp_path, capsys):
    work = as_smoke(workspace(tmp_path))
    baseline = tmp_path / "smoke.yaml"
    baseline.write_text("tolerances: {f1: 0.05, accuracy: 0.01, auc: 0.01}\ndrive:\n  unet: {f1: 0.8}\n")
    main(["record-baseline", "--workdir", str(work), "--baseline", str(baseline)])
    assert "recorded 36 numbers" in capsys.readouterr().out
    with pytest.raises(SystemExit) as same:
        main(["check", "--workdir", str(work), "--baseline", str(baseline)])
    assert same.value.code == 0
    path = work / "metrics" / "drive" / "unet.json"
    content = json.loads(path.read_text())
    content["fov"]["f1"] += 1e-9  # far inside every tolerance, but not the same number
    path.write_text(json.dumps(content))
    record(work)
    with pytest.raises(SystemExit) as moved:
        main(["check", "--workdir", str(work), "--baseline", str(baseline)])
    assert moved.value.code == 1
    assert "drive.unet.fov.f1:" in capsys.readouterr().out
    # a baseline's values are protocol `paper`'s: held against the fov numbers they would mean nothing
    with pytest.raises(SystemExit) as fov:
        main(["check", "--workdir", str(work), "--baseline", str(baseline), "--protocol", "fov"])
    assert fov.value.code == 2
    assert capsys.readouterr().err == (f"error: --protocol fov --baseline {baseline}: a baseline's values are protocol"
                                       " `paper`'s (its exact numbers, both protocols', are held where its environment"
                                       " matches); drop --protocol fov\n")


@pytest.mark.parametrize("where", ["parent", "project", "file", "foreign"])
def test_smoke_refuses_a_workdir_it_would_overwrite(tmp_path, monkeypatch, capsys, where):
    monkeypatch.chdir(ROOT)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "README.md").write_text("my notes\n")
    (tmp_path / "a-file").write_text("x\n")
    workdir = {"parent": ROOT.parent, "project": ROOT, "file": tmp_path / "a-file", "foreign": foreign}[where]
    with pytest.raises(SystemExit) as exit_:
        main(["smoke", "--workdir", str(workdir)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --workdir {workdir}") and len(err.strip().splitlines()) == 1
    expected = {"parent": "contains the project", "project": "contains the project", "file": "is a file",
                "foreign": "not empty and not a smoke workspace"}[where]
    assert expected in err
    assert (foreign / "README.md").read_text() == "my notes\n" and sorted(p.name for p in foreign.iterdir()) == ["README.md"]


def test_smoke_accepts_an_empty_folder_and_an_earlier_smoke_workspace(tmp_path):
    from skunet.cli import SMOKE_MARKER, check_workdir

    check_workdir(ROOT, tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_workdir(ROOT, tmp_path / "empty")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / SMOKE_MARKER).write_text("made by `skunet smoke`\n")
    (earlier / "dvc.yaml").write_text("stages: {}\n")
    check_workdir(ROOT, earlier)
    check_workdir(ROOT, ROOT / ".smoke")


@pytest.mark.slow
def test_skunet_audit_prints_every_published_row_and_recomputes_its_verdicts(tmp_path):
    """Offline, from published/paper.yaml: 20 rows with verdicts; a value changed to one no
    evaluation can give (DRIVE accuracy 0.9999 beside F1 0.8291) turns its row inconsistent
    everywhere: the verdicts are computed, never stored."""
    reference = yaml.safe_load((ROOT / "published" / "paper.yaml").read_text())
    reference["drive"]["skunet"]["accuracy"] = 0.9999
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(reference, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-m", "skunet", "audit", "--reference", str(tmp_path / "paper.yaml")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    # the published values' table from the audit stage's output (which test_audit holds equal to
    # a fresh audit), to spare a second 8-second audit
    published = format_audit_table(json.loads((ROOT / PUBLISHED_AUDIT_JSON).read_text()))
    out = {name: [line for line in text.splitlines() if line.startswith(("| DRIVE |", "| CHASE_DB1 |"))]
           for name, text in (("published", published), ("changed", result.stdout))}
    assert len(out["published"]) == 20
    assert "| DRIVE | 3 | skunet | 0.9699 | 0.8291 | ✓ | ✓ | ✗ | ✗ |" in out["published"][2]
    assert out["changed"][2].startswith("| DRIVE | 3 | skunet | 0.9999 | 0.8291 | ✗ | ✗ | ✗ | ✗ |")
    assert out["changed"][:2] == out["published"][:2] and out["changed"][3:] == out["published"][3:]


@pytest.mark.parametrize(("overlay", "error"), [
    ("train:\n  common:\n    epochs: 0\n", "error: params.yaml + params.tiny.yaml: train.common.epochs = 0: "),
    ("evaluate:\n  threshhold: 0.4\n", "error: params.tiny.yaml: unknown key 'evaluate.threshhold' (not in params.yaml);"
                                       " fix the spelling there"),
])
def test_smoke_with_a_bad_overlay_writes_nothing(tmp_path, overlay, error):
    """A workspace half laid out would hold the paper profile's params.yaml: `dvc repro` there
    would start the paper-size run."""
    from conftest import project_copy

    project = project_copy(tmp_path / "project")
    (project / "params.tiny.yaml").write_text(overlay)
    result = subprocess.run([sys.executable, "-m", "skunet", "smoke", "--workdir", str(tmp_path / "ws"), "--profile",
                             "tiny", "--no-repro"], cwd=project, env={**os.environ, "PYTHONPATH": str(project / "src")},
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith(error) and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "ws").exists()
