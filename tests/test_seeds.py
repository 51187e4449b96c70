"""skunet.seeds: finished seed experiments are read from `dvc exp show --json`, summarized, and
shown beside the single-run numbers."""

from __future__ import annotations

import json

import pytest

from conftest import REFERENCE, TOL
from skunet import compare as C
from skunet.errors import SkunetError
from skunet.seeds import load_summary, runs_from_exp_show, summarize


def _data(seed: int, f1: float) -> dict:
    """An experiment's data as `dvc exp show --json` gives it (params and metrics per file)."""
    block = {"f1": f1, "accuracy": 0.9, "auc": 0.95}
    return {"params": {"params.yaml": {"data": {"base": {"seed": seed, "profile": "smoke"}}}},
            "metrics": {"metrics/drive/skunet.json": {"data": {"paper": block, "fov": block}}}}


def _experiment(name: str, seed: int, f1: float, state: str | None) -> dict:
    executor = None if state is None else {"state": state, "name": "dvc-task"}
    return {"name": name, "executor": executor,
            "revs": [{"rev": "abc", "name": name, "data": _data(seed, f1), "error": None, "experiments": None}]}


# The layout of DVC 3's `dvc exp show --json --all-commits`: the workspace, then commits, each with
# its experiments; a running one already reports its params with the baseline's metrics.
SHOWN = [
    {"rev": "workspace", "name": None, "data": _data(42, 0.60), "error": None, "experiments": None},
    {"rev": "5d429a4", "name": "main", "data": _data(42, 0.60), "error": None, "experiments": [
        _experiment("seed-45", 45, 0.60, "running"),
        _experiment("seed-44", 44, 0.58, "success"),
        _experiment("seed-43", 43, 0.57, None),  # finished and stored
        _experiment("seed-46", 46, 0.60, "queued"),
        _experiment("seed-47", 47, 0.10, "failed"),
        _experiment("lr-test", 48, 0.50, None),  # not a seed experiment
    ]},
]


def test_only_finished_seed_experiments_are_taken():
    runs = runs_from_exp_show(SHOWN)
    assert sorted(runs) == [43, 44]


def test_the_summary_gives_mean_sd_and_range_per_cell():
    summary = summarize(runs_from_exp_show(SHOWN), "smoke")
    cell = summary["cells"]["drive"]["skunet"]["paper"]["f1"]
    assert summary["seeds"] == [43, 44] and cell["values"] == {"43": 0.57, "44": 0.58}
    assert cell["mean"] == pytest.approx(0.575) and cell["sd"] == pytest.approx(0.00707107, rel=1e-5)
    assert (cell["min"], cell["max"]) == (0.57, 0.58)
    assert "unet" not in summary["cells"]["drive"]  # no seed has its metrics


def test_cells_show_the_spread_over_seeds(tmp_path):
    summary = summarize(runs_from_exp_show(SHOWN), "smoke")
    (tmp_path / "smoke.json").write_text(json.dumps(summary))
    assert load_summary(tmp_path, "smoke") == summary and load_summary(tmp_path, "paper") is None
    reproduced = {"drive": {"skunet": {"paper": {"f1": 0.60, "accuracy": 0.9, "auc": 0.95}}}}
    result = C.attach_seeds(C.compare(reproduced, REFERENCE, TOL), summary)
    assert result["datasets"]["drive"]["cells"]["skunet"]["f1"]["seeds"]["n"] == 2
    text = C.format_table(result)
    assert "| drive | skunet | f1 | 0.6000 | - | 0.5750 ± 0.0071 [0.5700, 0.5800] (n=2) |" in text
    assert "seeds 43, 44" in text
    stale = C.format_table(C.attach_seeds(C.compare(reproduced, REFERENCE, TOL), summary, seed=43))
    assert "(n=2, STALE) |" in stale and "run `skunet seeds` again" in stale  # seed 43 gave 0.57, this run 0.60
    fresh = {"drive": {"skunet": {"paper": {"f1": 0.57, "accuracy": 0.9, "auc": 0.95}}}}
    assert "STALE" not in C.format_table(C.attach_seeds(C.compare(fresh, REFERENCE, TOL), summary, seed=43))
    # seeds run on another CPU: the same code and seed give other bits there, which is not staleness
    elsewhere = C.format_table(C.attach_seeds(C.compare(reproduced, REFERENCE, TOL), summary, seed=43,
                                              elsewhere=["cpu: Intel Xeon recorded, AMD EPYC here"]))
    assert "STALE" not in elsewhere and "(n=2) |" in elsewhere
    assert ("The seeds ran in another environment than this run (cpu: Intel Xeon recorded, AMD EPYC here), where"
            " the same code and seed give other bits") in elsewhere


@pytest.mark.parametrize(("cells", "where"), [
    (None, "not a seeds summary of this profile"),
    ({"drive": {"unet": "x"}}, "'cells.drive.unet' is not a mapping"),
    ({"drive": {"unet": {"paper": {"f1": {"values": {"42": 0.5}, "mean": 0.5}}}}},
     "'cells.drive.unet.paper.f1' is not a spread over seeds"),
])
def test_a_damaged_summary_is_one_line(tmp_path, cells, where):
    summary = {"profile": "paper", "cells": {}} if cells is None else {"profile": "smoke", "seeds": [42], "cells": cells}
    (tmp_path / "smoke.json").write_text(json.dumps(summary))
    with pytest.raises(SkunetError, match=rf"smoke.json: not a seeds summary \({where}\); run `skunet seeds collect`"):
        load_summary(tmp_path, "smoke")
