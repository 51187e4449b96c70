"""skunet check holds the metrics files to dvc.lock: one it does not record is refused, one made
before its inputs changed is named out of date."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from skunet.cli import main
from test_cli import as_smoke, record, workspace


def _check(work, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--workdir", str(work)])
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def test_a_metrics_file_edited_after_its_run_is_refused_in_one_line(tmp_path, capsys):
    work = workspace(tmp_path)
    path = work / "metrics" / "drive" / "unet.json"
    content = json.loads(path.read_text())
    content["paper"]["f1"] += 0.001  # a number typed in: the scores no longer come from the recorded run
    path.write_text(json.dumps(content))
    code, out, err = _check(work, capsys)
    assert code == 2 and out == ""
    assert err == ("error: metrics/drive/unet.json: not the file dvc.lock records for evaluate@drive-unet (edited"
                   " since, or left by another run); run `dvc repro evaluate@drive-unet` (or `git checkout` it"
                   " together with dvc.lock)\n")


def test_a_metrics_file_that_dvc_lock_does_not_record_is_refused(tmp_path, capsys):
    work = workspace(tmp_path)
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    del lock["stages"]["evaluate@chase-skunet"]
    (work / "dvc.lock").write_text(yaml.safe_dump(lock))
    code, _, err = _check(work, capsys)
    assert code == 2
    assert err.startswith("error: metrics/chase/skunet.json: dvc.lock records no evaluate@chase-skunet that wrote it")
    (work / "dvc.lock").unlink()
    code, _, err = _check(work, capsys)
    assert code == 2 and "metrics/drive/unet.json: dvc.lock records no evaluate@drive-unet" in err


def test_metrics_made_before_a_parameter_or_the_code_changed_are_named_out_of_date(tmp_path, capsys):
    work = workspace(tmp_path)
    code, out, _ = _check(work, capsys)
    assert code == 0 and "out of date" not in out

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["evaluate"]["threshold"] = 0.3
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    code, out, _ = _check(work, capsys)
    assert code == 0  # the numbers are still those dvc.lock records: a note, not a failure
    assert ("note: metrics/drive/unet.json, metrics/drive/unet_dropblock.json, metrics/drive/skunet.json, "
            "metrics/chase/unet.json, metrics/chase/unet_dropblock.json, metrics/chase/skunet.json are out of date: "
            "made before params.yaml:evaluate changed; `dvc repro` brings them up to date") in out
    params["evaluate"]["threshold"] = 0.5
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    # DRIVE's U-Net trained with a learning rate changed since, by a train stage edited since; a
    # file the checkout lacks (a fresh clone has no models/) is no sign of change
    (work / "stages").mkdir()
    (work / "stages" / "train.py").write_text("# the train stage\n")
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    lock["stages"]["train@drive-unet"] = {
        "cmd": "python stages/train.py drive unet",
        "deps": [{"path": "stages/train.py", "hash": "md5", "md5": hashlib.md5(b"# the train stage\n").hexdigest()},
                 {"path": "models/drive/unet.pt", "hash": "md5", "md5": "0" * 32}],
        "params": {"params.yaml": {"models.unet": {**params["models"]["unet"], "lr": 0.01}}},
        "outs": [{"path": "models/drive/unet.pt", "hash": "md5", "md5": "1" * 32}]}
    (work / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    (work / "stages" / "train.py").write_text("# the train stage, edited\n")
    code, out, _ = _check(work, capsys)
    assert code == 0
    assert ("note: metrics/drive/unet.json is out of date: made before stages/train.py, params.yaml:models.unet changed;"
            " `dvc repro` brings it up to date") in out
    assert out.count("out of date") == 1


def test_the_record_is_checked_against_the_smoke_baseline_too(tmp_path, capsys):
    work = as_smoke(workspace(tmp_path))
    baseline = tmp_path / "smoke.yaml"
    baseline.write_text("tolerances: {f1: 0.05, accuracy: 0.01, auc: 0.01}\ndrive:\n  unet: {f1: 0.8}\n")
    main(["record-baseline", "--workdir", str(work), "--baseline", str(baseline)])
    capsys.readouterr()
    (work / "metrics" / "drive" / "unet.json").write_text(
        (work / "metrics" / "drive" / "unet.json").read_text() + "\n")  # the same numbers, not the same file
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--workdir", str(work), "--baseline", str(baseline)])
    assert exit_.value.code == 2
    assert "metrics/drive/unet.json: not the file dvc.lock records" in capsys.readouterr().err
    record(work)
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--workdir", str(work), "--baseline", str(baseline)])
    assert exit_.value.code == 0


def test_record_baseline_refuses_a_tiny_workspace_and_metrics_out_of_date(tmp_path, capsys):
    (tmp_path / "ws").mkdir()
    work = workspace(tmp_path / "ws")
    baseline = tmp_path / "smoke.yaml"
    baseline.write_text("tolerances: {f1: 0.05}\ndrive:\n  unet: {f1: 0.8}\n")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["base"]["profile"] = "tiny"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(SystemExit) as exit_:
        main(["record-baseline", "--workdir", str(work), "--baseline", str(baseline)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"error: {work}/params.yaml: base.profile is tiny, and a smoke baseline records"
                                       " a smoke run: record from a workspace `skunet smoke --workdir DIR` made\n")
    as_smoke(work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["evaluate"]["threshold"] = 0.4  # edited after the run
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(SystemExit) as exit_:
        main(["record-baseline", "--workdir", str(work), "--baseline", str(baseline)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {work}: nothing recorded, as metrics/drive/unet.json,")
    assert "are out of date: made before params.yaml:evaluate changed" in err
    assert "exact" not in baseline.read_text()
