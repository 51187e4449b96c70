"""skunet.compare: the reference file, tolerance edges, missing cells, ranking, skunet check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import REFERENCE, TOL
from skunet import compare as C

ROOT = Path(__file__).resolve().parents[1]
PAPER_YAML = ROOT / "published" / "paper.yaml"


def _metrics(f1, accuracy, auc, fov_shift=-0.03):
    """A per-model metrics file: `paper` as given, `fov` lower (as inside-FOV numbers are)."""
    paper = {"f1": f1, "accuracy": accuracy, "auc": auc, "tp": 1, "fp": 1, "fn": 1, "tn": 1}
    fov = {k: (v + fov_shift if isinstance(v, float) else v) for k, v in paper.items()}
    return {"paper": paper, "fov": fov}


def _exact_copy(reference=REFERENCE):
    return {d: {m: _metrics(**v) for m, v in models.items()} for d, models in reference.items()}


# ---------------------------------------------------------------------------------------------
# the published file


def test_published_paper_yaml_holds_tables_3_and_4():
    ref = C.load_reference(PAPER_YAML)
    assert ref == REFERENCE
    text = PAPER_YAML.read_text()
    assert "10.9708/jksci.2021.26.04.029" in text and "paper" in text


def test_published_paper_yaml_others_are_context():
    import yaml

    data = yaml.safe_load(PAPER_YAML.read_text())
    assert set(data["others"]) == {"drive", "chase"}
    assert data["others"]["drive"]["rsan"] == {"f1": 0.8203, "accuracy": 0.9691, "auc": 0.9855}
    assert data["others"]["chase"]["orlando"] == {"f1": 0.7332, "accuracy": 0.9458, "auc": 0.9524}
    assert all(len(v) == 7 for v in data["others"].values())


@pytest.mark.parametrize(
    "text, key",
    [
        ("drive:\n  unet: {f1: high}\n", "drive.unet.f1"),
        ("drive:\n  unet: 0.8\n", "drive.unet"),
        ("drive: [1, 2]\n", "drive"),
        ("drive:\n  unet: {f1: .nan}\n", "drive.unet.f1"),
        ("drive:\n  unet: {f1: true}\n", "drive.unet.f1"),
        ("drive:\n  unet: {f1: 81.2}\n", "drive.unet.f1"),  # a percentage
        ("drive:\n  unet: {accuracy: 1.0}\n", "drive.unet.accuracy"),  # the audit and compare cannot take it
        ("stare:\n  unet: {f1: 0.8}\n", "stare"),
        ("drive:\n  sknet: {f1: 0.8}\n", "drive.sknet"),
        ("drive:\n  unet: {F1: 0.8}\n", "drive.unet.F1"),
    ],
)
def test_load_reference_malformed_names_file_and_key(tmp_path, text, key):
    path = tmp_path / "baseline.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        C.load_reference(path)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and "\n" not in message


def test_load_reference_empty_missing_and_bad_yaml(tmp_path):
    for name, text in (("empty.yaml", ""), ("bad.yaml", "drive: {unet: [\n"),
                       ("twice.yaml", "drive:\n  unet: {f1: 0.8}\n  unet: {f1: 0.7}\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=name):
            C.load_reference(tmp_path / name)
    with pytest.raises(ValueError, match="nope.yaml"):
        C.load_reference(tmp_path / "nope.yaml")


def test_a_check_refuses_a_reference_cell_left_out_and_an_unknown_tolerance(tmp_path):
    """Either would drop cells from the gate without a word."""
    (tmp_path / "metrics" / "drive").mkdir(parents=True)
    (tmp_path / "metrics" / "drive" / "unet.json").write_text(json.dumps({"paper": {"f1": 0.8, "accuracy": 0.9}}))
    reference = tmp_path / "ref.yaml"
    reference.write_text("drive:\n  unet: {accuracy: 0.9}\n")
    with pytest.raises(C.ComparisonInputError, match=r"ref.yaml: key 'drive.unet' has no 'f1'"):
        C.run_check(tmp_path / "metrics", reference, {"f1": 0.02, "accuracy": 0.01})
    reference.write_text("drive:\n  unet: {f1: 0.8, accuracy: 0.9}\n")
    with pytest.raises(C.ComparisonInputError, match="tolerance for unknown metric 'F1'"):
        C.run_check(tmp_path / "metrics", reference, {"F1": 0.02, "accuracy": 0.01})
    assert C.run_check(tmp_path / "metrics", reference, {"f1": 0.02, "accuracy": 0.01})[0] == 0


@pytest.mark.parametrize("edit", [lambda m: m.pop("f1"), lambda m: m.update(f1=None), lambda m: m.update(f1="0.8")])
def test_a_metrics_file_without_a_number_is_named_not_called_missing(tmp_path, edit):
    """A key left out of a metrics file is a damaged file, not a model "not yet evaluated"."""
    (tmp_path / "metrics" / "drive").mkdir(parents=True)
    paper = {"f1": 0.8, "accuracy": 0.9}
    edit(paper)
    (tmp_path / "metrics" / "drive" / "unet.json").write_text(json.dumps({"paper": paper, "fov": paper}))
    reference = tmp_path / "ref.yaml"
    reference.write_text("drive:\n  unet: {f1: 0.8, accuracy: 0.9}\n")
    with pytest.raises(C.ComparisonInputError, match=r"metrics/drive/unet.json: no number at 'paper.f1' .*"
                                                     r"re-run `dvc repro -f -s evaluate@drive-unet`"):
        C.run_check(tmp_path / "metrics", reference, {"f1": 0.02, "accuracy": 0.01})


@pytest.mark.parametrize("content, problem", [
    ({"paper": {"f1": 1.5, "accuracy": 0.9}}, r"'paper.f1' is 1.5, not a score in \[0, 1\]"),
    ({"paper": {"f1": 0.8, "accuracy": 0.9, "sensitivity": -0.1}}, r"'paper.sensitivity' is -0.1, not a score"),
    ({"paper": []}, r"'paper' is not an object of metrics \(got \[\]\)"),
    ('{"paper": {"f1": 0.8', r"not readable as JSON \(.*\); re-run"),
])
def test_a_metrics_file_with_a_score_out_of_range_or_damaged_is_named(tmp_path, content, problem):
    """A score outside [0, 1] is a damaged file, not a result to compare (it used to FAIL as one)."""
    (tmp_path / "metrics" / "drive").mkdir(parents=True)
    (tmp_path / "metrics" / "drive" / "unet.json").write_text(content if isinstance(content, str) else json.dumps(content))
    reference = tmp_path / "ref.yaml"
    reference.write_text("drive:\n  unet: {f1: 0.8, accuracy: 0.9}\n")
    with pytest.raises(C.ComparisonInputError, match=r"metrics/drive/unet.json: " + problem + r".*`dvc repro -f -s"
                                                     r" evaluate@drive-unet`"):
        C.run_check(tmp_path / "metrics", reference, {"f1": 0.02, "accuracy": 0.01})


def test_load_reference_reads_json_baseline(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"drive": {"unet": {"f1": 0.8}}}))
    assert C.load_reference(path) == {"drive": {"unet": {"f1": 0.8}}}


# ---------------------------------------------------------------------------------------------
# tolerance edges


def _one_cell(reproduced, published, tol, metric="f1"):
    result = C.compare(
        {"drive": {"unet": {"paper": {metric: reproduced}}}},
        {"drive": {"unet": {metric: published}}},
        {metric: tol},
    )
    return result["datasets"]["drive"]["cells"]["unet"][metric]


@pytest.mark.parametrize(
    "reproduced, published, tol, passes",
    [
        (0.8491, 0.8291, 0.02, True),  # exactly at tolerance (float delta 0.020000000000000018)
        (0.8091, 0.8291, 0.02, True),  # exactly at tolerance, negative delta
        (0.9749, 0.9699, 0.005, True),
        (0.9649, 0.9699, 0.005, True),
        (0.8492, 0.8291, 0.02, False),  # just over
        (0.8090, 0.8291, 0.02, False),  # just over, negative
        (0.9699 + 0.005 + 1e-9, 0.9699, 0.005, False),  # over by far more than the float slack
        (0.8291, 0.8291, 0.0, True),  # zero tolerance, equal
        (0.8292, 0.8291, 0.0, False),
    ],
)
def test_tolerance_edges(reproduced, published, tol, passes):
    cell = _one_cell(reproduced, published, tol)
    assert cell["pass"] is passes
    assert cell["delta"] == pytest.approx(reproduced - published)
    assert cell["tolerance"] == tol and cell["missing"] is None


def test_float_rounding_really_needs_the_slack():
    # guards the test above: without the slack this delta would fail
    assert abs(0.8491 - 0.8291) > 0.02


def test_negative_delta_sign():
    cell = _one_cell(0.80, 0.8291, 0.05)
    assert cell["delta"] == pytest.approx(-0.0291) and cell["pass"] is True


def test_exact_copy_all_pass_and_counts():
    result = C.compare(_exact_copy(), REFERENCE, TOL)
    assert (result["n_cells"], result["n_pass"], result["n_missing"]) == (18, 18, 0)
    assert result["all_pass"] is True
    assert result["protocol"] == "paper"
    json.dumps(result)  # JSON-ready


def test_protocol_selects_the_metrics():
    result = C.compare(_exact_copy(), REFERENCE, TOL, protocol="fov")
    # fov values are 0.03 lower: f1 (tol 0.02), accuracy and auc all fail
    assert result["n_pass"] == 0 and result["all_pass"] is False
    cell = result["datasets"]["chase"]["cells"]["skunet"]["f1"]
    assert cell["delta"] == pytest.approx(-0.03)


def test_missing_protocol_is_an_error():
    with pytest.raises(ValueError, match="drive/unet.*'paper'"):
        C.compare({"drive": {"unet": {"fov": {"f1": 0.8}}}}, REFERENCE, TOL)


# ---------------------------------------------------------------------------------------------
# missing cells


def test_missing_cells_are_reported_not_passed():
    reproduced = {"drive": {"unet": {"paper": {"f1": 0.8120, "accuracy": 0.9682}}}}
    result = C.compare(reproduced, REFERENCE, TOL)
    assert (result["n_cells"], result["n_pass"]) == (2, 2)
    assert result["n_missing"] == 16  # drive/unet auc + 5 models x 3 metrics
    assert result["all_pass"] is True  # every *compared* cell passes
    auc = result["datasets"]["drive"]["cells"]["unet"]["auc"]
    assert auc["missing"] == "reproduced" and auc["pass"] is None and auc["reproduced"] is None
    chase = result["datasets"]["chase"]["cells"]["skunet"]["f1"]
    assert chase["missing"] == "reproduced" and chase["published"] == 0.8171


def test_unpublished_model_is_missing_published():
    reproduced = _exact_copy()
    reproduced["drive"]["unet_wide"] = _metrics(0.83, 0.97, 0.98)
    result = C.compare(reproduced, REFERENCE, TOL)
    cell = result["datasets"]["drive"]["cells"]["unet_wide"]["f1"]
    assert cell["missing"] == "published" and cell["reproduced"] == 0.83
    assert result["n_missing"] == 3 and result["n_cells"] == 18


def test_nothing_compared_is_not_a_pass():
    result = C.compare({}, REFERENCE, TOL)
    assert result["n_cells"] == 0 and result["all_pass"] is False
    assert result["n_missing"] == 18


def test_only_metrics_with_tolerances_are_compared():
    result = C.compare(_exact_copy(), REFERENCE, {"auc": 0.01})
    assert result["n_cells"] == 6
    assert set(result["datasets"]["drive"]["cells"]["skunet"]) == {"auc"}


def test_bad_tolerances():
    with pytest.raises(ValueError, match="'f1'"):
        C.compare(_exact_copy(), REFERENCE, {"f1": -0.1})
    with pytest.raises(ValueError, match="no tolerances"):
        C.compare(_exact_copy(), REFERENCE, {})


# ---------------------------------------------------------------------------------------------
# ranking


def test_ranking_holds_on_published_values():
    result = C.compare(_exact_copy(), REFERENCE, TOL)
    for dataset in ("drive", "chase"):
        ranking = result["datasets"][dataset]["ranking"]
        assert ranking["holds"] is True
        assert ranking["order"] == ["skunet", "unet_dropblock", "unet"]


@pytest.mark.parametrize(
    "f1s, holds",
    [
        ((0.80, 0.81, 0.82), True),
        ((0.82, 0.81, 0.80), False),  # reversed
        ((0.80, 0.82, 0.81), False),  # dropblock beats skunet
        ((0.80, 0.80, 0.81), False),  # a tie is not "better"
    ],
)
def test_ranking_true_false(f1s, holds):
    unet, dropblock, skunet = f1s
    reproduced = {
        "drive": {
            "unet": _metrics(unet, 0.96, 0.98),
            "unet_dropblock": _metrics(dropblock, 0.96, 0.98),
            "skunet": _metrics(skunet, 0.96, 0.98),
        }
    }
    result = C.compare(reproduced, REFERENCE, TOL)
    assert result["datasets"]["drive"]["ranking"]["holds"] is holds
    assert result["datasets"]["chase"]["ranking"]["holds"] is None  # nothing reproduced


def test_ranking_needs_all_three_models():
    reproduced = _exact_copy()
    del reproduced["drive"]["unet"]
    result = C.compare(reproduced, REFERENCE, TOL)
    assert result["datasets"]["drive"]["ranking"]["holds"] is None
    assert result["datasets"]["chase"]["ranking"]["holds"] is True


# ---------------------------------------------------------------------------------------------
# flattened for DVC, and the table


def _scalars_only(obj) -> bool:
    if isinstance(obj, dict):
        return all(_scalars_only(v) for v in obj.values())
    return isinstance(obj, (int, float)) and not isinstance(obj, bool)


def test_flatten_for_dvc_layout():
    reproduced = _exact_copy()
    reproduced["drive"]["skunet"]["paper"]["f1"] = 0.9  # fails
    del reproduced["chase"]["unet"]
    flat = C.flatten_for_dvc(C.compare(reproduced, REFERENCE, TOL))
    assert _scalars_only(flat)
    cell = flat["drive"]["skunet"]["f1"]
    assert cell == {
        "reproduced": 0.9, "published": 0.8291, "delta": pytest.approx(0.0709),
        "tolerance": 0.02, "pass": 0,
    }
    assert flat["drive"]["unet"]["auc"]["pass"] == 1
    assert flat["chase"]["unet"]["f1"] == {"published": 0.7927, "tolerance": 0.02, "missing": 1}
    assert flat["drive"]["ranking_holds"] == 1
    assert "ranking_holds" not in flat["chase"]
    assert (flat["n_cells"], flat["n_pass"], flat["n_missing"], flat["all_pass"]) == (15, 14, 3, 0)
    json.dumps(flat)


def test_result_rows_has_one_row_per_cell_missing_ones_included():
    reproduced = _exact_copy()
    del reproduced["chase"]["unet"]
    rows = C.result_rows(C.compare(reproduced, REFERENCE, TOL))
    assert len(rows) == 18
    assert [r["metric"] for r in rows if r["missing"] == "reproduced"] == ["f1", "accuracy", "auc"]


def test_format_table_lines():
    reproduced = _exact_copy()
    reproduced["drive"]["skunet"]["paper"]["f1"] = 0.9
    reproduced["drive"]["unet"]["paper"]["f1"] = 0.95  # breaks the ranking
    del reproduced["chase"]["unet"]
    table = C.format_table(C.compare(reproduced, REFERENCE, TOL))
    lines = table.splitlines()
    assert lines[0] == (
        "| dataset | model | metric | reproduced | interval | published | delta | tolerance | pass |"
    )
    assert "| drive | skunet | f1 | 0.9000 | - | 0.8291 | +0.0709 | 0.0200 | FAIL |" in lines
    assert "| drive | unet | accuracy | 0.9682 | - | 0.9682 | +0.0000 | 0.0050 | pass |" in lines
    assert "| chase | unet | f1 | - | - | 0.7927 | - | 0.0200 | missing reproduced |" in lines
    assert any(l.startswith("- drive:") and "does NOT hold" in l for l in lines)
    assert any(l.startswith("- chase:") and "not checked" in l for l in lines)
    assert "13/15 compared cells within tolerance" in lines[-1] and "3 missing" in lines[-1]


# ---------------------------------------------------------------------------------------------
# skunet check


def _write_metrics(metrics_dir: Path, reproduced) -> None:
    for dataset, models in reproduced.items():
        for model, content in models.items():
            path = metrics_dir / dataset / f"{model}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))


def test_run_check_pass(tmp_path):
    _write_metrics(tmp_path / "metrics", _exact_copy())
    (tmp_path / "metrics" / "compare.json").write_text("{}")  # other files are ignored
    code, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL)
    assert code == 0
    assert "18/18 compared cells within tolerance" in text and "FAIL" not in text


def test_run_check_fail(tmp_path):
    reproduced = _exact_copy()
    reproduced["chase"]["skunet"]["paper"]["auc"] = 0.9909 - 0.0101
    _write_metrics(tmp_path / "metrics", reproduced)
    code, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL)
    assert code == 1 and "FAIL" in text


def test_run_check_fails_on_a_missing_result_unless_the_run_is_declared_partial(tmp_path):
    _write_metrics(tmp_path / "metrics", {"drive": {"unet": _metrics(0.81, 0.968, 0.98)}})
    code, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL)
    assert code == 1
    assert "missing reproduced" in text and "15 missing" in text
    assert "5 model(s) missing, FAIL" in text and "--allow-missing" in text
    code, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL, allow_missing=True)
    assert code == 0
    assert "5 model(s) missing, allowed (--allow-missing)" in text
    assert "- chase/skunet: f1, accuracy, auc not reproduced" in text and "skunet.json" in text
    assert "drive/unet:" not in text


def test_a_missing_model_says_whether_it_is_trained(tmp_path):
    _write_metrics(tmp_path / "metrics", {"drive": {"unet": _metrics(0.81, 0.968, 0.98)}})
    (tmp_path / "models" / "drive").mkdir(parents=True)
    (tmp_path / "models" / "drive" / "skunet.pt").write_bytes(b"a checkpoint")
    _, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL, allow_missing=True)
    assert ("- drive/skunet: f1, accuracy, auc not reproduced (no " + str(tmp_path / "metrics" / "drive" / "skunet")
            + ".json: trained, not yet evaluated; `dvc repro evaluate@drive-skunet`)") in text
    assert "chase/unet.json: not yet trained; `dvc repro evaluate@chase-unet` trains and evaluates it)" in text
    (tmp_path / ".skunet-state").mkdir()
    state = {key: {} for key in ("fingerprint", "epoch", "model", "optimizer", "scheduler", "best")}
    torch.save({**state, "history": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]}, tmp_path / ".skunet-state" / "chase-unet.pt")
    _, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL, allow_missing=True)
    assert ("chase/unet.json: in training, 3 epochs done; `dvc repro evaluate@chase-unet` goes on from "
            "there and evaluates it)") in text
    (tmp_path / ".skunet-state" / "chase-unet.pt").write_bytes(b"a damaged resume state")
    _, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL, allow_missing=True)
    assert ("chase/unet.json: in training, its resume state chase-unet.pt damaged (the train stage starts it"
            " over); `dvc repro evaluate@chase-unet` trains and evaluates it)") in text
    assert "chase/skunet.json: not yet trained;" in text


def test_run_check_allow_missing_still_fails_a_compared_cell_out_of_tolerance(tmp_path):
    _write_metrics(tmp_path / "metrics", {"drive": {"unet": _metrics(0.70, 0.968, 0.98)}})
    code, _ = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL, allow_missing=True)
    assert code == 1


def test_run_check_fov_protocol(tmp_path):
    _write_metrics(tmp_path / "metrics", _exact_copy())
    code, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL, protocol="fov")
    assert code == 1 and "`fov`" in text


def test_run_check_no_metrics(tmp_path):
    code, text = C.run_check(tmp_path / "metrics", PAPER_YAML, TOL)
    assert code == 1
    assert text.startswith("no metrics found") and "drive" in text and "unet.json" in text


def test_run_check_malformed_metrics_file(tmp_path):
    path = tmp_path / "metrics" / "drive" / "unet.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="unet.json"):
        C.run_check(tmp_path / "metrics", PAPER_YAML, TOL)


def test_intervals_sit_beside_the_cells_and_say_whether_the_ranking_is_supported():
    """The bootstrap's bounds join each reproduced cell, its differences and ranking verdict join
    each dataset; pass and fail stay the tolerance rule's."""
    import numpy as np

    from skunet.uncertainty import model_intervals

    rng = np.random.default_rng(0)
    vessel = rng.integers(2000, 4000, 20)  # images of different difficulty, the same for all models
    counts, hists = {}, {}
    for model, skill in (("unet", 0.70), ("unet_dropblock", 0.75), ("skunet", 0.80)):
        tp = (vessel * skill).astype(int)
        fn, fp = vessel - tp, (vessel * (1 - skill) / 2).astype(int)
        tn = 40_000 - vessel - fp
        counts[model] = np.stack([tp, fp, fn, tn], axis=1)
        h = np.zeros((20, 2, 256), np.int64)
        h[:, 1, 200], h[:, 1, 50] = tp, fn  # vessel pixels found high, missed low
        h[:, 0, 200], h[:, 0, 50] = fp, tn
        counts[model], hists[model] = counts[model], h
    boot = model_intervals(counts, hists, C.PAPER_RANKING, n_resamples=500, seed=0)
    result = C.attach_intervals(C.compare(_exact_copy(), REFERENCE, TOL), {"drive": boot})
    cell = result["datasets"]["drive"]["cells"]["skunet"]["f1"]
    low, high = cell["interval"]
    assert low < high and cell["pass"] is True  # the interval changes no verdict
    assert result["datasets"]["drive"]["ranking"]["verdict"] == "supported"
    assert "interval" not in result["datasets"]["chase"]["cells"]["skunet"]["f1"]
    table = C.format_table(result)
    assert "| dataset | model | metric | reproduced | 95% interval |" in table
    assert f"| drive | skunet | f1 | 0.8291 | [{low:.4f}, {high:.4f}] |" in table
    assert "is supported at 95%" in table and "500 resamples, seed 0" in table
    flat = C.flatten_for_dvc(result)["drive"]["skunet"]["f1"]
    assert (flat["ci_low"], flat["ci_high"]) == (low, high)


@pytest.mark.parametrize(("fraction", "text"), [(0.95, "95%"), (0.999, "99.9%"), (0.9, "90%"), (0.975, "97.5%"),
                                              (0.9999999, "99.99999%"), (0.12345678, "12.345678%")])
def test_a_confidence_level_is_said_as_precisely_as_it_was_given(fraction, text):
    """0.999 was said "100%", an interval that no bootstrap gives."""
    assert C.percent(fraction) == text
