"""scripts/wheelhouse.sh: bad arguments stop with one line and exit 2, before any download."""

from __future__ import annotations

import subprocess

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "wheelhouse.sh"


def test_wheelhouse_without_arguments_prints_its_usage(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "usage: scripts/wheelhouse.sh PYTHON_VERSION OUT_DIR [HAVE_FILE]"


def test_wheelhouse_names_a_missing_have_file_and_writes_nothing(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "3.12", "out", "have.txt"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "have.txt: no such file; give a list of installed packages or leave it out"
    assert list(tmp_path.iterdir()) == []
