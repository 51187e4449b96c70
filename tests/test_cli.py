"""The skunet command: check exits 0 within tolerance and 1 outside; the smoke workspace layout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from skunet.cli import lay_out_workspace, main

PUBLISHED = yaml.safe_load((ROOT / "published" / "paper.yaml").read_text())


def workspace(tmp_path, shift: float = 0.0):
    """params.yaml, published/paper.yaml and metrics equal to the published values (+ shift)."""
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
    return tmp_path


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
    args = ["check", "--workdir", str(tmp_path), "--baseline", str(ROOT / "baselines" / "smoke.yaml")]
    with pytest.raises(SystemExit) as ok:
        main(args)
    assert ok.value.code == 0
    broken = tmp_path / "metrics" / "chase" / "unet.json"
    broken.write_text(json.dumps({"paper": {**baseline["chase"]["unet"], "f1": 0.0}}))
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
