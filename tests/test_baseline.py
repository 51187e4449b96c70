"""The smoke baseline: tolerances always, every number exactly where the environment matches."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from skunet import baseline as B
from skunet import compare as C
from skunet.config import DATASETS, MODELS
from skunet.config import PROTOCOLS
from skunet.metrics import COUNT_NAMES, SCORE_NAMES


def _metrics_file(f1: float) -> dict:
    paper = {"f1": f1, "accuracy": 0.9388824402957934, "auc": 0.9173149652335421,
             "sensitivity": 0.41, "tp": 240384, "fp": 65766, "fn": 337561, "tn": 5955489}
    return {"paper": paper, "fov": {**paper, "accuracy": 0.91}}


def _write_run(metrics_dir: Path, f1: float = 0.5437967639224291) -> None:
    for dataset in DATASETS:
        for model in MODELS:
            path = metrics_dir / dataset / f"{model}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_metrics_file(f1)))


@pytest.fixture
def recorded(tmp_path) -> Path:
    """A baseline recorded here, from a complete run in tmp_path/metrics."""
    _write_run(tmp_path / "metrics")
    path = tmp_path / "smoke.yaml"
    path.write_text("# how this baseline was made\ntolerances: {f1: 0.1, accuracy: 0.02, auc: 0.04}\n"
                    "drive:\n  unet: {f1: 0.5, accuracy: 0.9, auc: 0.9}\n")
    B.record(path, tmp_path / "metrics")
    return path


def test_load_baseline_reference_and_tolerances(tmp_path):
    path = tmp_path / "smoke.yaml"
    path.write_text(
        "# a smoke-run baseline\n"
        "tolerances: {f1: 0.1, auc: 0.05}\n"
        "drive:\n  unet: {f1: 0.5, accuracy: 0.9, auc: 0.8}\n"
    )
    baseline = B.load_baseline(path)
    assert baseline["tolerances"] == {"f1": 0.1, "auc": 0.05}
    assert baseline["reference"] == {"drive": {"unet": {"f1": 0.5, "accuracy": 0.9, "auc": 0.8}}}
    assert baseline["environment"] is None and baseline["exact"] is None
    assert C.load_reference(path) == baseline["reference"]  # `tolerances` is not a dataset


@pytest.mark.parametrize(
    "text, key",
    [
        ("drive:\n  unet: {f1: 0.5}\n", "key 'tolerances'"),
        ("tolerances: {f1: -1}\ndrive:\n  unet: {f1: 0.5}\n", "key 'tolerances.f1'"),
        ("tolerances: {f1: 1}\ndrive:\n  unet: {f1: 0.5}\nexact: {}\n", "keys 'environment' and 'exact'"),
    ],
)
def test_load_baseline_bad_layout(tmp_path, text, key):
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"b.yaml: {key}"):
        B.load_baseline(path)


def test_run_check_against_baseline(tmp_path):
    baseline = tmp_path / "smoke.yaml"
    baseline.write_text("tolerances: {f1: 0.1}\ndrive:\n  unet: {f1: 0.5}\n")
    (tmp_path / "metrics" / "drive").mkdir(parents=True)
    (tmp_path / "metrics" / "drive" / "unet.json").write_text(json.dumps(_metrics_file(0.58)))
    tolerances = B.load_baseline(baseline)["tolerances"]
    code, text = C.run_check(tmp_path / "metrics", baseline, tolerances)
    assert code == 0 and "1/1 compared cells" in text
    code, _ = C.run_check(tmp_path / "metrics", baseline, {"f1": 0.05})
    assert code == 1


def test_record_keeps_the_header_and_tolerances_and_rounds_the_gated_values(recorded):
    text = recorded.read_text()
    assert text.startswith("# how this baseline was made\ntolerances: {f1: 0.1, accuracy: 0.02, auc: 0.04}\n")
    baseline = B.load_baseline(recorded)
    assert baseline["reference"]["chase"]["skunet"] == {"f1": 0.5438, "accuracy": 0.9389, "auc": 0.9173}
    assert baseline["environment"] == B.environment()
    # full precision survives the YAML round trip, counts stay integers
    assert baseline["exact"]["drive"]["unet"]["paper"]["f1"] == 0.5437967639224291
    assert baseline["exact"]["drive"]["unet"]["fov"]["tn"] == 5955489


def test_exact_check_passes_when_every_number_repeats(recorded, tmp_path):
    code, text = B.exact_check(B.load_baseline(recorded), tmp_path / "metrics")
    assert code == 0
    assert text == "same environment as the baseline: all 96 recorded numbers repeated exactly\n"


@pytest.mark.parametrize("key, value", [("tn", 5955488), ("f1", math.nextafter(0.5437967639224291, 1.0))])
def test_exact_check_fails_when_one_number_moves_by_its_last_digit(recorded, tmp_path, key, value):
    path = tmp_path / "metrics" / "chase" / "unet_dropblock.json"
    content = json.loads(path.read_text())
    content["fov"][key] = value
    path.write_text(json.dumps(content))
    code, text = B.exact_check(B.load_baseline(recorded), tmp_path / "metrics")
    assert code == 1
    assert "1 of 96 recorded numbers changed" in text
    assert f"chase.unet_dropblock.fov.{key}:" in text and repr(value) in text
    assert "skunet record-baseline" in text


def test_exact_check_fails_when_a_recorded_model_is_missing(recorded, tmp_path):
    (tmp_path / "metrics" / "drive" / "skunet.json").unlink()
    code, text = B.exact_check(B.load_baseline(recorded), tmp_path / "metrics")
    assert code == 1 and "drive.skunet.paper.f1: 0.5437967639224291 recorded, missing here" in text
    # a declared partial run: the models present must still repeat exactly
    code, text = B.exact_check(B.load_baseline(recorded), tmp_path / "metrics", allow_missing=True)
    assert code == 0 and "all 80 recorded numbers repeated exactly" in text
    path = tmp_path / "metrics" / "drive" / "unet.json"
    content = json.loads(path.read_text())
    content["fov"]["tp"] += 1
    path.write_text(json.dumps(content))
    code, text = B.exact_check(B.load_baseline(recorded), tmp_path / "metrics", allow_missing=True)
    assert code == 1 and "1 of 80 recorded numbers changed" in text


def test_in_another_environment_only_the_tolerances_hold(recorded, tmp_path):
    data = yaml.safe_load(recorded.read_text())
    data["environment"]["numpy"] = "1.0.0"
    recorded.write_text(yaml.safe_dump(data))
    path = tmp_path / "metrics" / "drive" / "unet.json"
    path.write_text(json.dumps(_metrics_file(0.51)))  # moved, but within the tolerance
    code, text = B.exact_check(B.load_baseline(recorded), tmp_path / "metrics")
    assert code == 0
    assert text.startswith(f"environment differs from the baseline's (numpy: 1.0.0 recorded, {B.environment()['numpy']} here)")
    assert "held to the tolerances (the spread over seeds) only" in text


def test_record_refuses_an_incomplete_run_and_leaves_the_baseline(recorded, tmp_path):
    before = recorded.read_text()
    (tmp_path / "metrics" / "chase" / "skunet.json").unlink()
    with pytest.raises(C.ComparisonInputError, match="skunet.json: missing; run the whole smoke pipeline"):
        B.record(recorded, tmp_path / "metrics")
    assert recorded.read_text() == before


@pytest.mark.parametrize("value", [None, float("nan"), "absent"])
def test_record_refuses_a_metrics_file_without_a_gated_number(recorded, tmp_path, value):
    before = recorded.read_text()
    path = tmp_path / "metrics" / "drive" / "unet.json"
    content = json.loads(path.read_text())
    if value == "absent":
        del content["paper"]["f1"]
    else:
        content["paper"]["f1"] = value
    path.write_text(json.dumps(content))
    with pytest.raises(C.ComparisonInputError, match=r"drive/unet.json: no number at 'paper.f1'"):
        B.record(recorded, tmp_path / "metrics")
    assert recorded.read_text() == before


def test_the_committed_smoke_baseline_holds_every_number_of_every_model():
    baseline = B.load_baseline(ROOT / "baselines" / "smoke.yaml")
    assert set(baseline["environment"]) == set(B.environment())
    for dataset in DATASETS:
        for model in MODELS:
            for protocol in PROTOCOLS:
                assert set(baseline["exact"][dataset][model][protocol]) == {*SCORE_NAMES, "auc", *COUNT_NAMES}
            gated = baseline["reference"][dataset][model]
            assert gated == {k: round(baseline["exact"][dataset][model]["paper"][k], 4) for k in gated}


def _as_if_elsewhere(path: Path, **changes) -> None:
    """The baseline at `path` as if recorded in another environment (`changes` to it)."""
    data = yaml.safe_load(path.read_text())
    data["environment"].update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_baseline_holds_each_environment_it_records_to_its_own_numbers(recorded, tmp_path):
    """The same code and seed give other bits on another CPU: its numbers, added beside the
    recorded ones, hold a run there exactly too; the values and the first environment stay."""
    _as_if_elsewhere(recorded, cpu="Another CPU")
    before = B.load_baseline(recorded)
    code, text = B.exact_check(before, tmp_path / "metrics")
    assert code == 0 and text.startswith("environment differs from the baseline's (cpu: Another CPU recorded")
    said = B.add_environment(recorded, tmp_path / "metrics")
    assert said.endswith("2 environments recorded")
    after = B.load_baseline(recorded)
    assert {k: after[k] for k in ("reference", "tolerances", "environment", "exact")} == \
        {k: before[k] for k in ("reference", "tolerances", "environment", "exact")}
    assert after["also"] == [{"environment": B.environment(), "exact": after["also"][0]["exact"]}]
    code, text = B.exact_check(after, tmp_path / "metrics")
    assert code == 0 and text == (f"same environment as one the baseline also records ({B.environment()['cpu']}):"
                                  " all 96 recorded numbers repeated exactly\n")
    path = tmp_path / "metrics" / "drive" / "unet.json"
    content = json.loads(path.read_text())
    content["paper"]["tp"] += 1  # a bug that moves one count: caught on this CPU too
    path.write_text(json.dumps(content))
    code, text = B.exact_check(after, tmp_path / "metrics")
    assert code == 1 and "1 of 96 recorded numbers changed" in text and "drive.unet.paper.tp" in text
    # added again here: replaced, not doubled; in the baseline's own environment: refused
    B.add_environment(recorded, tmp_path / "metrics")
    assert len(B.load_baseline(recorded)["also"]) == 1
    # a whole re-recording is of new numbers: the other environments' go, and it says so
    assert "dropped the 1 other environment it recorded" in B.record(recorded, tmp_path / "metrics")
    assert B.load_baseline(recorded)["also"] == []
    with pytest.raises(C.ComparisonInputError, match="this environment is the baseline's own"):
        B.add_environment(recorded, tmp_path / "metrics")


@pytest.mark.parametrize("damage, key", [
    (lambda d: d.update(exact={}), "key 'exact.drive.unet' must map each protocol"),
    (lambda d: d["exact"]["chase"].update(skunet=None), "key 'exact.chase.skunet' must map each protocol"),
    (lambda d: d["exact"]["drive"]["unet"]["paper"].update(f1="0.5"), "key 'exact.drive.unet.paper.f1' must be a finite"),
    (lambda d: d["exact"]["drive"]["unet"]["fov"].update(tp=float("nan")), "key 'exact.drive.unet.fov.tp' must be a finite"),
    (lambda d: d.update(also=[{"environment": {}}]), "key 'also' must be a list of mappings"),
])
def test_a_baseline_whose_exact_numbers_are_damaged_is_refused(recorded, damage, key):
    """An emptied or damaged `exact` would hold fewer numbers, or none, and still pass."""
    data = yaml.safe_load(recorded.read_text())
    damage(data)
    recorded.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(C.ComparisonInputError, match=f"smoke.yaml: {re.escape(key)}"):
        B.load_baseline(recorded)


def test_record_refuses_a_metrics_file_with_a_number_that_is_not_finite(recorded, tmp_path):
    before = recorded.read_text()
    path = tmp_path / "metrics" / "chase" / "unet.json"
    content = json.loads(path.read_text())
    content["fov"]["tp"] = float("nan")
    path.write_text(json.dumps(content))
    with pytest.raises(C.ComparisonInputError, match=r"chase/unet.json: 'fov.tp' is not a finite number; run its"):
        B.record(recorded, tmp_path / "metrics")
    assert recorded.read_text() == before


def test_an_environment_entry_of_another_type_is_quoted_where_it_reads_the_same():
    assert B.environment_differences({"threads": "2", "cpu": "A"}, {"threads": 2, "cpu": "B"}) == [
        "cpu: A recorded, B here", "threads: '2' recorded, 2 here"]


def _params(profile: str = "smoke", lr: float = 0.003) -> dict:
    return {"base": {"seed": 42, "profile": profile}, "models": {"unet": {"lr": lr}}}


def test_a_baseline_records_the_parameters_and_holds_a_run_of_others_to_the_tolerances_only(tmp_path):
    _write_run(tmp_path / "metrics")
    path = tmp_path / "smoke.yaml"
    path.write_text("tolerances: {f1: 0.1}\ndrive:\n  unet: {f1: 0.5}\n")
    B.record(path, tmp_path / "metrics", _params())
    baseline = B.load_baseline(path)
    assert baseline["params"] == B.params_record(_params()) and baseline["params"]["profile"] == "smoke"
    assert B.exact_check(baseline, tmp_path / "metrics", params=_params())[0] == 0
    # the same numbers from other parameters would be a coincidence: not held exactly, said why
    code, text = B.exact_check(baseline, tmp_path / "metrics", params=_params(lr=0.002))
    assert code == 1 and text.startswith("this workspace's parameters are not the baseline's (the smoke profile, but"
                                         " params.yaml differs from the one it records)")
    code, text = B.exact_check(baseline, tmp_path / "metrics", params=_params("tiny"))
    assert code == 1 and "(profile tiny, not the smoke profile it records)" in text
    assert B.params_record(_params(lr=0)) != B.params_record(_params(lr=0.0))  # kinds, as DVC hashes them


def test_only_a_smoke_workspace_is_recorded_and_added(tmp_path):
    _write_run(tmp_path / "metrics")
    path = tmp_path / "smoke.yaml"
    path.write_text("tolerances: {f1: 0.1}\ndrive:\n  unet: {f1: 0.5}\n")
    before = path.read_text()
    with pytest.raises(C.ComparisonInputError, match=r"^ws/params.yaml: base.profile is tiny, and a smoke baseline"
                                                     r" records a smoke run"):
        B.record(path, tmp_path / "metrics", _params("tiny"), "ws/params.yaml")
    assert path.read_text() == before
    B.record(path, tmp_path / "metrics", _params())
    _as_if_elsewhere(path, cpu="Another CPU")
    with pytest.raises(C.ComparisonInputError, match=r"^ws/params.yaml: not the parameters .*smoke.yaml records"):
        B.add_environment(path, tmp_path / "metrics", _params(lr=0.002), "ws/params.yaml")
    said = B.add_environment(path, tmp_path / "metrics", _params())
    assert ": added 96 numbers from " in said and said.endswith("; 2 environments recorded")
    recorded = path.read_text()
    said = B.add_environment(path, tmp_path / "metrics", _params())
    assert said.endswith("is recorded already, with these very numbers: nothing to change") and \
        path.read_text() == recorded
    _write_run(tmp_path / "metrics", f1=0.6)
    assert ": replaced the 96 numbers from " in B.add_environment(path, tmp_path / "metrics", _params())
    assert B.load_baseline(path)["params"] == B.params_record(_params())
