"""skunet.report: files are written, non-empty, and say where the numbers come from."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REFERENCE, ROOT, TOL, fake_raw, one_line_error, run_stage, write_params
from skunet import compare as C
from skunet import metrics as M
from skunet import report as R
from skunet.config import parse_yaml
from skunet.errors import SkunetError
from test_training import _checkpoint

SMOKE = {"run": "exp-abc123", "profile": "smoke", "device": "CPU (2 cores)", "date": "2024-01-01"}
PAPER = {"run": "exp-def456", "profile": "paper", "device": "NVIDIA H100",
         "augmented_with": "albumentations 2.0.8, numpy 2.2.6, opencv 4.12.0"}


def _reproduced():
    """The metrics files the comparison of :func:`_results` was made from (chase/unet missing)."""
    reproduced = {
        d: {
            m: {
                "paper": {k: v - 0.004 for k, v in vals.items()},
                "fov": {k: v - 0.03 for k, v in vals.items()},
            }
            for m, vals in models.items()
        }
        for d, models in REFERENCE.items()
    }
    del reproduced["chase"]["unet"]
    return reproduced


def _write_reproduced(root: Path) -> None:
    for dataset, models in _reproduced().items():
        for model, content in models.items():
            (root / "metrics" / dataset).mkdir(parents=True, exist_ok=True)
            (root / "metrics" / dataset / f"{model}.json").write_text(json.dumps(content))


def _write_results(root: Path, data: dict) -> None:
    """reports/results.json as the compare stage leaves it: written, and recorded in dvc.lock as
    that stage's output (`skunet readme` publishes no other)."""
    path = root / "reports" / "results.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    out = {"path": "reports/results.json", "hash": "md5", "md5": hashlib.md5(path.read_bytes()).hexdigest()}
    (root / "dvc.lock").write_text(json.dumps({"schema": "2.0", "stages": {"compare": {"cmd": "python stages/compare.py",
                                                                                       "outs": [out]}}}))


def _results():
    return {p: C.compare(_reproduced(), REFERENCE, TOL, protocol=p) for p in ("paper", "fov")}


def _full(run, results=None, **extra):
    """The compare stage's results as reports/results.json holds them."""
    return {"run": run, "protocols": _results() if results is None else results, **extra}


def _assert_png(path):
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100
    assert not list(path.parent.glob(".*tmp*"))  # no temporary file left behind


def test_write_markdown_report_both_protocols(tmp_path):
    results = _results()
    plots = tmp_path / "plots"
    figures = {"bars": plots / "bars.png", "ROC, DRIVE": plots / "roc.png"}
    path = R.write_markdown_report(_full(PAPER, results), tmp_path / "reports" / "report.md", figures)
    text = path.read_text()
    assert "exp-def456" in text and "`paper`" in text and "NVIDIA H100" in text
    assert "No paper-profile run" not in text
    assert text.index("Protocol `paper`") < text.index("Protocol `fov`")
    assert "| drive | skunet | f1 | 0.8251 | - | 0.8291 | -0.0040 | 0.0200 | pass |" in text
    assert "missing reproduced" in text
    assert "ranking (skunet > unet_dropblock > unet) holds" in text
    assert "![bars](../plots/bars.png)" in text
    assert not list(path.parent.glob(".*tmp"))


def test_write_markdown_report_single_result_smoke(tmp_path):
    path = R.write_markdown_report(_full(SMOKE, {"paper": _results()["paper"]}), tmp_path / "report.md")
    text = path.read_text()
    assert "No paper-profile run exists yet" in text and "`smoke`" in text
    assert "Protocol `fov`" not in text


def test_plot_bars(tmp_path):
    results = _results()
    _assert_png(R.plot_bars(results["paper"], tmp_path / "bars.png"))
    _assert_png(R.plot_bars(results["fov"], tmp_path / "bars_fov.png"))


def test_plot_roc(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.random(4000) < 0.15
    curves = {}
    for i, model in enumerate(("unet", "unet_dropblock", "skunet")):
        s = np.clip(rng.normal(0.3 + (0.3 + 0.05 * i) * y, 0.2), 0, 1)
        curves[model] = M.roc_curve_points(y, s)
    curves["skunet"]["auc"] = 0.99
    _assert_png(R.plot_roc(curves, "drive", tmp_path / "roc.png"))
    R.plot_roc(curves, "drive", tmp_path / "roc.svg")
    assert "<svg" in (tmp_path / "roc.svg").read_text()


def test_error_map_colours():
    prob = np.array([[0.9, 0.9, 0.1, 0.1]])
    label = np.array([[1, 0, 1, 0]])
    fov = np.array([[1, 1, 1, 0]])
    rgb = R.error_map(prob, label, fov)
    assert tuple(rgb[0, 0]) == R.ERROR_COLOURS["true positive"]
    assert tuple(rgb[0, 1]) == R.ERROR_COLOURS["false positive"]
    assert tuple(rgb[0, 2]) == R.ERROR_COLOURS["false negative"]
    assert tuple(rgb[0, 3]) == R.ERROR_COLOURS["outside FOV, no error"]
    assert tuple(R.error_map(prob, label)[0, 3]) == R.ERROR_COLOURS["true negative"]
    # an error outside the FOV keeps its colour: the `paper` protocol counts it
    outside = R.error_map(prob, label, np.zeros_like(fov))
    assert tuple(outside[0, 1]) == R.ERROR_COLOURS["false positive"]


def test_plot_qualitative(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 60, 3), dtype=np.uint8)
    label = rng.random((64, 60)) < 0.1
    fov = np.zeros((64, 60), dtype=bool)
    fov[5:-5, 5:-5] = True
    preds = [(m, rng.random((64, 60))) for m in ("unet", "unet_dropblock", "skunet")]
    _assert_png(R.plot_qualitative(image, preds, label, fov, tmp_path / "q.png", "DRIVE 01"))
    grey, one = image[..., 0], preds[0][1]
    _assert_png(R.plot_qualitative(grey, one, label, None, tmp_path / "q1.png", "grey, one model"))


def test_readme_results_section_says_when_no_paper_run():
    text = R.readme_results_section(_full(SMOKE))
    assert text.startswith("## Results")
    assert "No paper-profile run exists yet" in text
    assert "exp-abc123" in text and "CPU (2 cores)" in text and "`smoke`" in text
    assert "reports/results.json" in text
    assert "| drive | skunet | f1 | 0.8251 | - | 0.8291 | -0.0040 | 0.0200 | pass |" in text
    assert "Protocol `fov`" in text


def test_a_run_labelled_paper_whose_checkpoints_record_less_is_not_called_a_reproduction():
    """base.profile is a label: a tiny run relabelled `paper` lost the banner and read as the paper's."""
    assert "No paper-profile run" not in R.readme_results_section(_full(PAPER))
    assert "Not the paper's training" not in R.readme_results_section(_full(PAPER))
    text = R.readme_results_section(_full({**PAPER, "short_of_paper": "6 epochs; 90 training samples"}))
    assert ("**Not the paper's training.** The run is labelled `paper`, but its checkpoints record 6 epochs; 90"
            " training samples, not the paper's full training (50 epochs, all augmentations)") in text


def test_provenance_names_the_training_time():
    text = R.readme_results_section(_full({**PAPER, "training_time": "12 min 5 s for 6 trainings"}))
    assert "; training took 12 min 5 s for 6 trainings." in text


def test_readme_results_section_paper_run():
    text = R.readme_results_section(_full(PAPER, {"paper": _results()["paper"]}))
    assert "No paper-profile run" not in text
    assert "exp-def456" in text and "NVIDIA H100" in text and "`paper`" in text
    assert "augmentations drawn with albumentations 2.0.8, numpy 2.2.6, opencv 4.12.0" in text


def test_readme_results_section_no_metrics():
    text = R.readme_results_section(_full({}, {"paper": C.compare({}, {}, TOL)}))
    assert "No metrics yet" in text and "No paper-profile run exists yet" in text


@pytest.mark.parametrize("name", ["report.md"])
def test_report_overwrites_in_place(tmp_path, name):
    path = tmp_path / name
    path.write_text("old")
    R.write_markdown_report(_full(PAPER), path)
    assert path.read_text() != "old"


def test_read_results_reads_what_the_compare_stage_writes(tmp_path):
    # the layout stages/compare.py writes: the run context beside one result per protocol
    run = {"run": "dvc repro, smoke profile", "profile": "smoke", "device": "cpu", "torch": "2.13"}
    data = {"run": run, "protocols": _results(), "human": {}, "audit": None, "missing": []}
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.json").write_text(json.dumps(data))
    text = R.readme_results_section(R.read_results(tmp_path))
    assert "No paper-profile run exists yet" in text and "torch 2.13" in text
    assert "Protocol `paper`" in text and "Protocol `fov`" in text
    assert R.readme_results_section(data) == text


def test_read_results_missing_or_foreign(tmp_path):
    with pytest.raises(SkunetError, match="results.json not found"):
        R.read_results(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.json").write_text(json.dumps({"paper": {}}))
    with pytest.raises(SkunetError, match=r"not the compare stage's results \(no 'protocols'\)"):
        R.read_results(tmp_path)


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda d: d["protocols"]["paper"]["datasets"]["drive"]["cells"]["unet"]["f1"].pop("reproduced"),
     r"not as the compare stage writes it \(KeyError: 'reproduced'\)"),
    (lambda d: d.update(missing=[{"dataset": "drive"}]), r"not as the compare stage writes it \(KeyError: 'model'\)"),
    (lambda d: d.update(audit="x"), r"not as the compare stage writes it \(\w+Error"),
    (lambda d: d.pop("audit"), r"not the compare stage's results \(no 'audit'\)"),
    (lambda d: d["protocols"].pop("paper"), r"not as the compare stage writes it \(KeyError: 'paper'\)"),
])
def test_skunet_readme_refuses_a_results_file_not_as_compare_writes_it(tmp_path, edit, problem):
    """One line naming the file, and the README left as it was (a missing key used to drop the
    audit section without a word, a wrong one to end in a traceback)."""
    from skunet.cli import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"# project\n{README_START}\nold\n{README_END}\n")
    _write_reproduced(tmp_path)
    data = _full(PAPER, human={}, audit=None, missing=[])
    _write_results(tmp_path, data)
    assert "results section regenerated" in update_readme(tmp_path, tmp_path)
    written = readme.read_text()
    edit(data)
    _write_results(tmp_path, data)
    with pytest.raises(SkunetError, match=r"reports/results.json: " + problem + r".*run `dvc repro -f -s compare`$"):
        update_readme(tmp_path, tmp_path)
    assert readme.read_text() == written


def test_plot_roc_without_curves(tmp_path):
    _assert_png(R.plot_roc({}, "chase", tmp_path / "roc_empty.png"))


TRAINING = [
    {"dataset": "drive", "model": "unet", "epochs": 2, "best_epoch": 2, "best_val_loss": 0.1234,
     "best_val_f1": 0.8012, "seconds": 95.0, "device": "NVIDIA H100",
     "log": [{"epoch": 1.0, "train_loss": 0.5, "val_loss": 0.3, "val_f1": 0.6, "lr": 1e-3, "seconds": 50.0},
             {"epoch": 2.0, "train_loss": 0.2, "val_loss": 0.1234, "val_f1": 0.8012, "lr": 1e-3, "seconds": 45.0}]},
    {"dataset": "chase", "model": "skunet", "epochs": 0, "best_epoch": 3, "best_val_loss": 0.2,
     "best_val_f1": None, "seconds": None, "device": "NVIDIA H100", "log": []},
]


@pytest.mark.parametrize(("seconds", "text"), [(9.44, "9.4 s"), (59.94, "59.9 s"), (59.96, "1 min 0 s"),
                                               (252.4, "4 min 12 s"), (3599.6, "1 h 00 min"),
                                               (3659, "1 h 01 min"), (3780, "1 h 03 min")])
def test_format_duration(seconds, text):
    assert R.format_duration(seconds) == text


def test_report_lists_the_trainings(tmp_path):
    text = R.write_markdown_report(_full(PAPER), tmp_path / "report.md", None, TRAINING).read_text()
    assert "| drive | unet | 2 | 2 | 0.1234 | 0.8012 | 1 min 35 s | 47.5 s | NVIDIA H100 |" in text
    assert "| chase | skunet | 0 | 3 | 0.2000 |  | no log |  | NVIDIA H100 |" in text
    assert "1 min 35 s for 1 of 2 trainings (1 without a log)." in text
    assert R.training_time(TRAINING[:1]) == "1 min 35 s for 1 training"
    assert text.index("## Training") > text.index("Protocol `fov`")
    assert "## Training" not in R.write_markdown_report(_full(PAPER), tmp_path / "r2.md").read_text()


@pytest.mark.parametrize("rows", [TRAINING, []])
def test_plot_training_curves(tmp_path, rows):
    path = R.plot_training_curves(rows, tmp_path / "training.png")
    _assert_png(path)


def evaluated(root, dataset: str, model: str, seed: int = 0) -> dict:
    """What the evaluate stage writes for `model` on the fake raw data under `root`: a noisy
    version of each test label as the probability map, scored by the stage's own writer."""
    from skunet import metrics
    from skunet.data.raw import load_manifest, read_png
    from skunet.evaluation import save_level_png, write_evaluation

    raw = root / "data" / "raw" / dataset
    stems = load_manifest(raw)["test"]
    labels = [read_png(raw / "labels" / f"{s}.png", "L", "") > 127 for s in stems]
    fovs = [read_png(raw / "fov" / f"{s}.png", "L", "") > 127 for s in stems]
    rng = np.random.default_rng(seed)
    levels = [metrics.probability_to_uint8(0.7 * label + rng.uniform(0, 0.3, label.shape)) for label in labels]
    (root / "predictions" / dataset / model).mkdir(parents=True, exist_ok=True)
    for stem, level in zip(stems, levels):
        save_level_png(level, root / "predictions" / dataset / model / f"{stem}.png")
    return write_evaluation([metrics.uint8_to_probability(level) for level in levels], labels, fovs, stems,
                            root / "metrics" / dataset / f"{model}.json", root / "plots", f"{dataset}/{model}",
                            threshold=0.5, curve_points=50)


def _compare_project(tmp_path):
    """What the compare stage reads: one model's metrics, small raw data, published values; and
    the previous run's figures, report and compare.json."""
    write_params(tmp_path)
    (tmp_path / "published").mkdir()
    shutil.copy(ROOT / "published" / "paper.yaml", tmp_path / "published" / "paper.yaml")
    (tmp_path / "reports").mkdir()
    shutil.copy(ROOT / "reports" / "published_audit.json", tmp_path / "reports")  # the audit stage's
    for dataset in ("drive", "chase"):
        fake_raw(tmp_path, dataset, size=(48, 40))
    evaluated(tmp_path, "drive", "unet")
    old = {tmp_path / "plots" / "figures" / "bars.png": b"old bars",
           tmp_path / "reports" / "report.md": b"old report",
           tmp_path / "metrics" / "compare.json": b"{}",
           tmp_path / "reports" / "results.json": b"{}"}
    for path, content in old.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return old


@pytest.mark.slow
def test_compare_writes_figures_report_and_json_as_one(tmp_path):
    """A compare that fails after drawing figures (here on a damaged checkpoint) leaves the previous
    figures, report and compare.json as they were; once it succeeds, all three are new and the
    report links the figures where they are."""
    old = _compare_project(tmp_path)
    checkpoint = tmp_path / "models" / "drive" / "unet.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not a checkpoint")
    one_line_error(run_stage("compare.py", cwd=tmp_path), "models/drive/unet.pt: ")
    assert {path: path.read_bytes() for path in old} == old
    assert sorted(p.name for p in (tmp_path / "plots" / "figures").iterdir()) == ["bars.png"]
    assert not list(tmp_path.rglob(".*.tmp"))

    _checkpoint(checkpoint)
    result = run_stage("compare.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(path.read_bytes() != content for path, content in old.items())
    report = (tmp_path / "reports" / "report.md").read_text()
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    # bars, differences, training curves, and DRIVE's ROC and predictions: CHASE_DB1 has no model yet
    assert "../plots/figures/bars.png" in links and len(links) == 5
    for link in links:
        _assert_png(tmp_path / "reports" / link)
    assert json.loads((tmp_path / "reports" / "results.json").read_text())["run"]["profile"] == "paper"
    ours = json.loads((tmp_path / "metrics" / "drive" / "unet.json").read_text())["paper"]
    cell = json.loads((tmp_path / "metrics" / "compare.json").read_text())["paper"]["drive"]["unet"]["f1"]
    assert cell["reproduced"] == ours["f1"] and cell["ci_low"] <= ours["f1"] <= cell["ci_high"]
    results = json.loads((tmp_path / "reports" / "results.json").read_text())
    assert results["audit"]["self_audit"] == ["drive/unet/paper", "drive/unet/fov"]
    assert len(results["audit"]["rows"]) == 20 and set(results["human"]) == {"drive"}
    assert [(m["dataset"], m["model"], m["why"]) for m in results["missing"]] == [
        ("drive", "unet_dropblock", "not yet trained"), ("drive", "skunet", "not yet trained"),
        ("chase", "unet", "not yet trained"), ("chase", "unet_dropblock", "not yet trained"),
        ("chase", "skunet", "not yet trained")]
    assert "**A partial run:** 5 of the 6 published models have no results yet" in report
    assert "Human reference" in report and "Audit: could the published numbers" in report
    assert not list(tmp_path.rglob(".*.tmp"))


@pytest.mark.slow
def test_the_self_audit_fails_the_compare_stage_on_altered_counts(tmp_path):
    """Our metrics must add up to the test set's pixels under the protocol they claim: a file
    whose counts were altered (one vessel pixel moved to background) stops the compare stage."""
    _compare_project(tmp_path)
    _checkpoint(tmp_path / "models" / "drive" / "unet.pt")
    path = tmp_path / "metrics" / "drive" / "unet.json"
    content = json.loads(path.read_text())
    content["paper"]["tn"] += 1
    path.write_text(json.dumps(content))
    line = one_line_error(run_stage("compare.py", cwd=tmp_path), "metrics/drive/unet.json: self-audit failed",
                          "drive/paper: fp + tn", "dvc repro -f -s evaluate@drive-unet")
    assert "\n" not in line


@pytest.mark.parametrize("layout, found", [
    ("{end}\nmine\n{start}\n", "found 1 and 1, the end first"),
    ("{start}\nold\nmine, 600 lines of it\n{end}\n{end}\n", "found 1 and 2"),
    ("{start}\nold\n", "found 1 and 0"),
])
def test_skunet_readme_refuses_markers_out_of_place_and_leaves_the_readme(tmp_path, layout, found):
    """Markers swapped gave a traceback; an end marker moved down the file deleted all above it."""
    from skunet.cli import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text("# project\n" + layout.format(start=README_START, end=README_END))
    before = readme.read_text()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.json").write_text(json.dumps(_full(PAPER, human={}, audit=None, missing=[])))
    with pytest.raises(SkunetError, match=re.escape(f"README.md: the results section must be marked by one {README_START}"
                                                    f" line and then one {README_END} line ({found})")):
        update_readme(tmp_path, tmp_path)
    assert readme.read_text() == before


def test_skunet_readme_refuses_a_comparison_older_than_the_metrics_files(tmp_path):
    """A metrics file deleted, evaluated again or added since the compare stage ran: the README
    would publish numbers no file holds, or leave one out unsaid."""
    from skunet.cli import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"# project\n{README_START}\nold\n{README_END}\n")
    _write_reproduced(tmp_path)
    _write_results(tmp_path, _full(PAPER, human={}, audit=None, missing=[]))
    assert "results section regenerated" in update_readme(tmp_path, tmp_path)
    written = readme.read_text()
    drive_unet, chase_unet = tmp_path / "metrics" / "drive" / "unet.json", tmp_path / "metrics" / "chase" / "unet.json"
    content = json.loads(drive_unet.read_text())
    for change, said in ((lambda: drive_unet.unlink(), "gone"),
                         (lambda: drive_unet.write_text(json.dumps({**content, "fov": {**content["fov"], "f1": 0.5}})),
                          "its fov.f1 changed"),
                         (lambda: chase_unet.write_text(json.dumps(content)), "evaluated since")):
        change()
        path = chase_unet if said == "evaluated since" else drive_unet
        with pytest.raises(SkunetError, match=re.escape(f"reports/results.json: older than {path} ({said}); run"
                                                        " `dvc repro` to compare again")):
            update_readme(tmp_path, tmp_path)
        assert readme.read_text() == written
        _write_reproduced(tmp_path)
        chase_unet.unlink(missing_ok=True)
    data = _full(PAPER, human={}, audit=None, missing=[])
    for protocol in ("paper", "fov"):
        del data["protocols"][protocol]["datasets"]["drive"]["cells"]["unet"]  # its rows would drop unsaid
    _write_results(tmp_path, data)
    with pytest.raises(SkunetError, match=re.escape(f"older than {drive_unet} (not in its comparison)")):
        update_readme(tmp_path, tmp_path)


def test_skunet_readme_publishes_only_the_comparison_dvc_lock_records_up_to_date(tmp_path):
    """A results.json edited by hand (every cell set to pass), one no compare stage recorded, or
    one made before the tolerances or the published tables changed was published as it was."""
    from skunet.cli import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"# project\n{README_START}\nold\n{README_END}\n")
    before = readme.read_text()
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    _write_reproduced(tmp_path)
    data = _full(PAPER, human={}, audit=None, missing=[])
    _write_results(tmp_path, data)
    results = tmp_path / "reports" / "results.json"
    lock = json.loads((tmp_path / "dvc.lock").read_text())
    tolerances = parse_yaml((tmp_path / "params.yaml").read_text())["compare"]["tolerances"]
    lock["stages"]["compare"]["params"] = {"params.yaml": {"compare.tolerances": tolerances}}
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))
    recorded = (tmp_path / "dvc.lock").read_text()

    results.write_text(json.dumps({**data, "missing": []}, indent=1))  # the same content, other bytes
    with pytest.raises(SkunetError, match=re.escape(f"{results}: not the file dvc.lock records for the compare stage")):
        update_readme(tmp_path, tmp_path)
    (tmp_path / "dvc.lock").unlink()
    with pytest.raises(SkunetError, match=re.escape(f"{results}: dvc.lock records no compare stage that wrote it")):
        update_readme(tmp_path, tmp_path)
    results.write_text(json.dumps(data))
    (tmp_path / "dvc.lock").write_text(recorded)
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text().replace("    f1: 0.02", "    f1: 5.0"))
    with pytest.raises(SkunetError, match=re.escape(f"{results}: out of date, made before params.yaml:compare.tolerances"
                                                    " changed; run `dvc repro` to compare again, then `skunet readme`")):
        update_readme(tmp_path, tmp_path)
    assert readme.read_text() == before
    params.write_text(params.read_text().replace("    f1: 5.0", "    f1: 0.02"))
    assert "results section regenerated" in update_readme(tmp_path, tmp_path)


def test_skunet_readme_names_a_training_in_progress_as_check_does(tmp_path):
    """The compare stage's report calls a model whose training stopped mid-way "not yet trained"
    (the resume state is no input of that stage); `skunet readme`, like `skunet check`, says it is
    in training."""
    from skunet.cli import README_END, README_START, update_readme

    (tmp_path / "README.md").write_text(f"# project\n{README_START}\nold\n{README_END}\n")
    _write_reproduced(tmp_path)
    (tmp_path / "metrics" / "chase" / "skunet.json").unlink()
    data = _full(PAPER, human={}, audit=None, missing=[
        {"dataset": "chase", "model": "skunet", "metrics": ["f1", "accuracy", "auc"], "why": "not yet trained"}])
    for protocol in ("paper", "fov"):
        cells = data["protocols"][protocol]["datasets"]["chase"]["cells"]["skunet"]
        for cell in cells.values():
            cell["reproduced"] = None
    _write_results(tmp_path, data)
    assert update_readme(tmp_path, tmp_path).endswith("1 model(s) without results: chase/skunet (not yet trained)")
    (tmp_path / ".skunet-state").mkdir()
    state = {key: {} for key in ("fingerprint", "epoch", "model", "optimizer", "scheduler", "best")}
    torch.save({**state, "history": [{"epoch": 1}]}, tmp_path / ".skunet-state" / "chase-skunet.pt")
    assert update_readme(tmp_path, tmp_path).endswith(
        "1 model(s) without results: chase/skunet (in training, 1 epoch done)")
