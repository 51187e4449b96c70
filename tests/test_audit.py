"""skunet.audit: verdicts known by construction (both ways), the published tables, implied scores,
and the self-audit of our own metrics."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from skunet import audit as A
from skunet.metrics import scores_from_counts

ROOT = Path(__file__).resolve().parents[1]
PAPER_YAML = ROOT / "published" / "paper.yaml"

ALL_1 = "all pixels, pooled, 1st annotator"
FOV_1 = "FOV pixels, pooled, 1st annotator"
MEAN_ALL_1 = "all pixels, mean, 1st annotator"

# Real-looking pooled counts: tp and fp chosen, fn and tn the rest of the test set's P and N.
CHOSEN = {"drive": (460_000, 95_000), "chase": (400_000, 90_000)}


def _counts(dataset: str, pixels: str = "all") -> dict[str, int]:
    p, n = A.total_counts(dataset, pixels, 1)
    tp, fp = CHOSEN[dataset]
    return {"tp": tp, "fp": fp, "fn": p - tp, "tn": n - fp}


def _printed(counts: dict[str, int], names=("f1", "accuracy")) -> dict[str, float]:
    """Scores of the counts as a paper prints them: 4 decimals."""
    scores = scores_from_counts(counts)
    return {k: round(scores[k], 4) for k in names}


def _verdicts(dataset: str, scores: dict[str, float]) -> dict[str, str]:
    return {k: v["verdict"] for k, v in A.audit_scores(dataset, scores)["verdicts"].items()}


# ---------------------------------------------------------------------------------------------
# the test sets mlscorecheck ships are ours


def test_drive_counts_are_whole_565x584_images_of_test_images_01_to_20():
    images = A.per_image_counts("drive", "all", 1)
    assert [i["identifier"] for i in images] == [f"{k:02d}" for k in range(1, 21)]
    assert {i["p"] + i["n"] for i in images} == {565 * 584}
    assert sum(A.total_counts("drive", "all", 1)) == 20 * 565 * 584 == 6_599_200
    assert A.total_counts("drive", "all", 1) == (577_945, 6_021_255)
    assert sum(A.total_counts("drive", "fov", 1)) == 4_538_143  # inside the official masks


def test_chase_counts_are_whole_999x960_images_of_the_last_8():
    images = A.per_image_counts("chase", "all", 1)
    assert sorted(i["identifier"] for i in images) == sorted(A.CHASE_TEST)
    assert len(images) == 8 and {i["p"] + i["n"] for i in images} == {999 * 960}
    assert sum(A.total_counts("chase", "all", 1)) == 8 * 999 * 960 == 7_672_320
    assert A.total_counts("chase", "all", 2) != A.total_counts("chase", "all", 1)
    with pytest.raises(A.AuditInputError, match="no counts"):
        A.per_image_counts("chase", "fov", 1)


def test_assumption_table():
    drive, chase = A.AUDIT_ASSUMPTIONS["drive"], A.AUDIT_ASSUMPTIONS["chase"]
    assert len(set(drive)) == 8 and len(set(chase)) == 4
    assert {a.pixels for a in chase} == {"all"} and set(chase) < set(drive)
    assert ALL_1 in [a.label for a in drive] and len({a.label for a in drive}) == 8
    assert A.Assumption("fov", "mean", 2).label == "FOV pixels, mean, 2nd annotator"


# ---------------------------------------------------------------------------------------------
# audit_scores: consistency known by construction


def test_drive_pooled_whole_image_row_is_consistent_there_and_not_inside_the_fov():
    counts = _counts("drive")
    verdicts = _verdicts("drive", _printed(counts))
    assert verdicts[ALL_1] == "consistent"
    # inside the FOV the same accuracy leaves (1 - acc) * 4.54M errors, fewer than the vessel
    # pixels this F1 must then miss (P_fov - tp): no confusion matrix fits
    assert verdicts[FOV_1] == "inconsistent"
    assert verdicts[MEAN_ALL_1] == "not testable"  # accuracy alone; F1 is not a mean-check score


def test_drive_accuracy_off_by_0_01_is_inconsistent():
    scores = _printed(_counts("drive"))
    scores["accuracy"] = round(scores["accuracy"] + 0.0100, 4)
    assert _verdicts("drive", scores)[ALL_1] == "inconsistent"


def test_drive_fov_row_is_consistent_inside_the_fov_only():
    counts = _counts("drive", "fov")
    verdicts = _verdicts("drive", _printed(counts, ("f1", "accuracy", "sensitivity")))
    assert verdicts[FOV_1] == "consistent"
    assert verdicts[ALL_1] == "inconsistent"


def test_chase_pooled_row_both_ways():
    scores = _printed(_counts("chase"))
    verdicts = _verdicts("chase", scores)
    assert set(verdicts) == {a.label for a in A.AUDIT_ASSUMPTIONS["chase"]}  # no FOV
    assert verdicts[ALL_1] == "consistent"
    scores["accuracy"] = round(scores["accuracy"] + 0.0100, 4)
    assert _verdicts("chase", scores)[ALL_1] == "inconsistent"
    # the DRIVE-sized counts' scores do not fit CHASE_DB1's pixels
    assert _verdicts("chase", _printed(_counts("drive")))[ALL_1] == "inconsistent"


def _mean_of_images(dataset: str, sens: float, fpr: float) -> dict[str, float]:
    """Mean of per-image accuracy, sensitivity, specificity for chosen per-image counts."""
    rows = []
    for image in A.per_image_counts(dataset, "all", 1):
        p, n = image["p"], image["n"]
        tp, fp = round(sens * p), round(fpr * n)
        rows.append(scores_from_counts({"tp": tp, "fp": fp, "fn": p - tp, "tn": n - fp}))
    names = ("accuracy", "sensitivity", "specificity")
    return {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in names}


@pytest.mark.parametrize("dataset", ["drive", "chase"])
def test_mean_of_images_row_both_ways(dataset):
    scores = _mean_of_images(dataset, sens=0.78, fpr=0.017)
    audit = A.audit_scores(dataset, scores)["verdicts"][MEAN_ALL_1]
    assert audit["verdict"] == "consistent" and audit["scores_used"] == ["acc", "sens", "spec"]
    scores["accuracy"] = round(scores["accuracy"] + 0.0100, 4)
    assert _verdicts(dataset, scores)[MEAN_ALL_1] == "inconsistent"


def test_not_testable_says_which_scores_were_usable():
    audit = A.audit_scores("drive", {"f1": 0.8, "accuracy": 0.96, "auc": 0.98})
    mean = audit["verdicts"][MEAN_ALL_1]
    assert mean["verdict"] == "not testable" and mean["scores_used"] == ["acc"]
    assert "usable here: acc" in mean["reason"]
    assert audit["verdicts"][ALL_1]["scores_used"] == ["acc", "f1"]  # auc is ignored
    assert audit["eps"] == 1e-4


def test_bad_input_is_one_line_error():
    with pytest.raises(A.AuditInputError, match="unknown dataset"):
        A.audit_scores("stare", {"f1": 0.8, "accuracy": 0.96})
    with pytest.raises(A.AuditInputError, match="'accuracy'"):
        A.audit_scores("drive", {"f1": 0.8, "accuracy": 96.1})
    with pytest.raises(A.AuditInputError, match="eps"):
        A.audit_scores("drive", {"f1": 0.8, "accuracy": 0.96}, eps=0)


# ---------------------------------------------------------------------------------------------
# audit_reference and the table


@pytest.fixture(scope="module")
def published():
    return A.audit_reference(PAPER_YAML)


def test_the_committed_audit_is_what_the_audit_stage_computes_now(published, tmp_path):
    """reports/published_audit.json, the audit stage's output that a clone finds up to date, is
    the audit of published/paper.yaml by this code; the compare stage takes it only for the
    published values it was made from."""
    committed = ROOT / A.PUBLISHED_AUDIT_JSON
    assert json.loads(committed.read_text()) == published
    assert A.read_published_audit(PAPER_YAML, committed) == published

    edited = yaml.safe_load(PAPER_YAML.read_text())
    edited["chase"]["unet"]["f1"] = 0.7928
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    with pytest.raises(A.AuditInputError, match=r"audits other published values than .*paper.yaml's; run `dvc repro audit`"):
        A.read_published_audit(tmp_path / "paper.yaml", committed)
    for content, message in ((None, "not found; run `dvc repro audit`"),
                             ("{", r"unreadable \(.*\); run `dvc repro -f -s audit`"),
                             ('{"rows": 3}', "not as the audit stage writes it; run `dvc repro -f -s audit`")):
        damaged = tmp_path / "audit.json"
        damaged.unlink(missing_ok=True)
        if content is not None:
            damaged.write_text(content)
        with pytest.raises(A.AuditInputError, match=message):
            A.read_published_audit(PAPER_YAML, damaged)


def _row(result, dataset, method, table):
    (row,) = [
        r for r in result["rows"]
        if (r["dataset"], r["method"], r["table"]) == (dataset, method, table)
    ]
    return row


def test_published_rows_all_get_a_verdict_per_assumption(published):
    rows = published["rows"]
    assert len(rows) == 20
    assert sorted(r["table"] for r in rows) == [3] * 3 + [4] * 3 + [5] * 7 + [6] * 7
    for row in rows:
        labels = {a.label for a in A.AUDIT_ASSUMPTIONS[row["dataset"]]}
        assert set(row["verdicts"]) == labels
        assert set(row["verdicts"].values()) <= {"consistent", "inconsistent", "not testable"}
    # the paper's own rows fit pooled whole images (published/paper.yaml's protocol note)
    for dataset, table in (("drive", 3), ("chase", 4)):
        for method in ("unet", "unet_dropblock", "skunet"):
            assert _row(published, dataset, method, table)["verdicts"][ALL_1] == "consistent"
    assert _row(published, "drive", "skunet", 3)["verdicts"][FOV_1] == "inconsistent"


def test_a_changed_value_flips_its_row_verdicts_are_computed(published):
    data = yaml.safe_load(PAPER_YAML.read_text())
    changed = copy.deepcopy(data)
    changed["drive"]["skunet"]["accuracy"] = 0.9999  # with F1 0.8291: fits no evaluation
    result = A.audit_reference(changed)
    row = _row(result, "drive", "skunet", 3)
    testable = {k: v for k, v in row["verdicts"].items() if v != "not testable"}
    assert len(testable) == 4 and set(testable.values()) == {"inconsistent"}
    before = _row(published, "drive", "skunet", 3)["verdicts"]
    assert before[ALL_1] == "consistent" != row["verdicts"][ALL_1]
    others = [r for r in result["rows"] if (r["method"], r["table"]) != ("skunet", 3)]
    assert others == [r for r in published["rows"] if (r["method"], r["table"]) != ("skunet", 3)]


def test_format_audit_table(published):
    text = A.format_audit_table(published)
    lines = text.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 20
    assert "all/pooled/1" in table[0] and "fov/mean/2" in table[0]
    skunet = next(line for line in table if "| 3 | skunet |" in line)
    assert "0.9699 | 0.8291 | ✓ | ✓ | ✗ | ✗ |" in skunet
    assert all("n/a" in line for line in table if line.startswith("| CHASE_DB1"))
    assert "eps = 0.0001" in lines[-1] and "mean = mean of per-image scores" in lines[-1]


# ---------------------------------------------------------------------------------------------
# implied_pooled


@pytest.mark.parametrize("dataset", ["drive", "chase"])
def test_implied_pooled_recovers_the_counts_scores(dataset):
    counts = _counts(dataset)
    truth = scores_from_counts(counts)
    printed = _printed(counts)
    implied = A.implied_pooled(dataset, printed["accuracy"], printed["f1"])
    assert (implied["pixels"]["P"], implied["pixels"]["N"]) == A.total_counts(dataset, "all", 1)
    assert "mlscorecheck" in implied["pixels"]["source"]
    for name in ("sensitivity", "specificity", "precision"):
        s = implied["scores"][name]
        assert s["low"] <= truth[name] <= s["high"], name
        assert s["low"] <= s["value"] <= s["high"] and s["high"] - s["low"] < 0.005
    assert abs(implied["counts"]["tp"] - counts["tp"]) < 0.002 * counts["tp"]


def test_implied_pooled_refuses_impossible_rows():
    with pytest.raises(A.AuditInputError, match="impossible"):
        A.implied_pooled("drive", 0.9999, 0.8291)


def test_implied_intervals_stay_within_0_and_1():
    """F1 0 (no vessel found): the rounding's corners step below a precision of 0, the score cannot."""
    implied = A.implied_pooled("drive", 0.9, 0.0)
    assert all(0 <= s["low"] <= s["value"] <= s["high"] <= 1 for s in implied["scores"].values()), implied["scores"]


# ---------------------------------------------------------------------------------------------
# self_audit


def _block(counts: dict[str, int]) -> dict:
    """A metrics JSON protocol block: full-precision scores, the counts, an AUC."""
    return {**scores_from_counts(counts), "auc": 0.98, **counts}


@pytest.mark.parametrize(
    "dataset, protocol, pixels",
    [("drive", "paper", "all"), ("drive", "fov", "fov"), ("chase", "paper", "all")],
)
def test_self_audit_passes_on_counts_that_add_up(dataset, protocol, pixels):
    assert A.self_audit(dataset, protocol, _block(_counts(dataset, pixels))) == []


def test_self_audit_chase_fov_needs_the_callers_counts():
    p, n = 483_400, 4_832_865  # vessel / background inside our derived CHASE_DB1 FOV masks
    tp, fp = CHOSEN["chase"]
    block = _block({"tp": tp, "fp": fp, "fn": p - tp, "tn": n - fp})
    with pytest.raises(A.AuditInputError, match="pixels"):
        A.self_audit("chase", "fov", block)
    assert A.self_audit("chase", "fov", block, pixels=(p, n)) == []
    assert A.self_audit("chase", "fov", block, pixels=(p + 1, n))  # tp + fn no longer P


def test_self_audit_flags_tp_off_by_one():
    block = _block(_counts("drive"))
    block["tp"] += 1
    problems = A.self_audit("drive", "paper", block)
    assert any(p.startswith("drive/paper: tp + fn = 577,946") for p in problems), problems


def test_self_audit_flags_counts_moved_within_their_sum():
    counts = _counts("drive")
    block = _block(counts)
    block["tp"], block["fn"] = counts["tp"] + 1, counts["fn"] - 1  # still adds up to P
    problems = A.self_audit("drive", "paper", block)
    assert problems and all("but the counts give" in p for p in problems)
    assert any(p.startswith("drive/paper: f1 = ") for p in problems)


def test_self_audit_flags_scores_that_do_not_match():
    block = _block(_counts("chase"))
    block["accuracy"] += 1e-6
    problems = A.self_audit("chase", "paper", block)
    assert any("fit no confusion matrix" in p for p in problems), problems
    assert any(p.startswith("chase/paper: accuracy = ") for p in problems), problems
    assert all(p.startswith("chase/paper: ") and "\n" not in p for p in problems)


def test_self_audit_needs_counts():
    block = _block(_counts("drive"))
    del block["tn"]
    with pytest.raises(A.AuditInputError, match="'tn'"):
        A.self_audit("drive", "paper", block)
