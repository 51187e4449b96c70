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


def test_wheelhouse_refuses_a_have_file_with_no_package_name_before_any_download(tmp_path):
    """A wrong file (a log, a manifest's folder) would leave nothing out: everything fetched, and
    the lease tree past its 64 MiB, with no word that the list was not read."""
    have = tmp_path / "have.txt"
    have.write_text("# nothing here\n{\n  \"pieces\": []\n}\n")
    result = subprocess.run(["bash", str(SCRIPT), "3.12", str(tmp_path / "out"), str(have)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"{have}: no package name in it; give the machine's `pip freeze` (or a lease's"
                                      " manifest.json)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["have.txt"]
