"""skunet check --known: reviewed out-of-tolerance cells pass the gate only at the value reviewed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from skunet.cli import main
from skunet.errors import SkunetError
from skunet.known import load_known
from test_cli import record, workspace

GAP = round(0.8291 - 0.05, 4)  # drive/skunet/f1 in `workspace(shift=-0.05)`: 0.05 below the paper


def known_file(tmp_path, cells):
    path = tmp_path / "known.yaml"
    path.write_text(yaml.safe_dump({"protocol": "paper", "cells": cells}))
    return path


def gate(work, known, *extra):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--workdir", str(work), "--known", str(known), *extra])
    return exit_.value.code


def listed(value):
    return {"drive/skunet/f1": {"reproduced": value, "reason": "a gap under review"}}


def test_a_listed_gap_at_its_value_passes_the_gate_and_still_reads_fail(tmp_path, capsys):
    work = workspace(tmp_path, shift=-0.05)
    with pytest.raises(SystemExit) as plain:
        main(["check", "--workdir", str(work)])
    assert plain.value.code == 1
    assert gate(work, known_file(tmp_path, listed(GAP))) == 0
    out = capsys.readouterr().out
    assert "| drive | skunet | f1 | 0.7791 |" in out and "| FAIL |" in out
    assert "drive/skunet/f1: FAIL (0.7791, delta -0.0500), known: a gap under review" in out


def test_a_gap_nobody_listed_fails_the_gate(tmp_path, capsys):
    assert gate(workspace(tmp_path, shift=-0.05), known_file(tmp_path, {})) == 1
    assert "drive/skunet/f1: FAIL (0.7791, delta -0.0500), not in" in capsys.readouterr().out


def test_a_listed_gap_at_another_value_fails_the_gate(tmp_path, capsys):
    """A new run moved the number: the gap must be reviewed again."""
    assert gate(workspace(tmp_path, shift=-0.05), known_file(tmp_path, listed(0.7801))) == 1
    assert "lists it at 0.7801: a new run" in capsys.readouterr().out


def test_a_listed_cell_that_passes_now_fails_the_gate(tmp_path, capsys):
    assert gate(workspace(tmp_path, shift=0.015), known_file(tmp_path, listed(GAP))) == 1
    assert "passes now (0.8441): remove the entry" in capsys.readouterr().out


def test_a_listed_cell_without_its_result_fails_the_gate_even_for_a_partial_run(tmp_path, capsys):
    work = workspace(tmp_path, shift=-0.05)
    (work / "metrics" / "drive" / "skunet.json").unlink()
    record(work)
    assert gate(work, known_file(tmp_path, listed(GAP)), "--allow-missing") == 1
    assert "has no result now (missing reproduced)" in capsys.readouterr().out


def test_a_missing_model_still_fails_without_allow_missing(tmp_path):
    work = workspace(tmp_path, shift=-0.05)
    (work / "metrics" / "chase" / "unet.json").unlink()
    record(work)
    assert gate(work, known_file(tmp_path, listed(GAP))) == 1
    assert gate(work, known_file(tmp_path, listed(GAP)), "--allow-missing") == 0


@pytest.mark.parametrize(("text", "key"), [
    ("cells: {}\n", "`protocol` and `cells`"),
    ("protocol: fov2\ncells: {}\n", "protocol"),
    ("protocol: paper\ncells: [drive/unet/f1]\n", "cells"),
    ("protocol: paper\ncells:\n  drive/unet: {reproduced: 0.7, reason: x}\n", "drive/unet"),
    ("protocol: paper\ncells:\n  drive/unet/f1: {reproduced: low, reason: x}\n", "cells.drive/unet/f1.reproduced"),
    ("protocol: paper\ncells:\n  drive/unet/f1: {reproduced: 0.7}\n", "cells.drive/unet/f1"),
    ("protocol: paper\ncells:\n  drive/unet/f1: {reproduced: 0.7, reason: ' '}\n", "cells.drive/unet/f1.reason"),
])
def test_a_malformed_list_is_one_line_naming_the_key(tmp_path, text, key):
    path = tmp_path / "known.yaml"
    path.write_text(text)
    with pytest.raises(SkunetError) as err:
        load_known(path)
    assert str(err.value).startswith(f"{path}: ") and key in str(err.value) and "\n" not in str(err.value)


def test_a_cell_name_the_comparison_lacks_fails_the_gate(tmp_path, capsys):
    cells = {**listed(GAP), "drive/unet/dice": {"reproduced": 0.5, "reason": "x"}}
    assert gate(workspace(tmp_path, shift=-0.05), known_file(tmp_path, cells)) == 1
    assert "drive/unet/dice: listed in" in capsys.readouterr().out


def test_known_with_a_baseline_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--known", str(known_file(tmp_path, {})), "--baseline", str(ROOT / "baselines" / "smoke.yaml")])
    assert exit_.value.code == 2
    assert "a smoke baseline is held exactly" in capsys.readouterr().err


def test_the_committed_run_passes_the_ci_gate_with_its_reviewed_gaps():
    """What .ci/run runs on the committed paper-profile metrics."""
    n = len(list((ROOT / "metrics").glob("*/*.json")))
    if n == 0:
        pytest.skip("no committed paper-profile metrics")
    args = [sys.executable, "-m", "skunet", "check", "--known", "published/known_deviations.yaml"]
    result = subprocess.run(args + ([] if n == 6 else ["--allow-missing"]), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
