"""compare: reproduced vs published, cell by cell, under both protocols, with intervals from a
paired bootstrap over the test images, the audit of the published numbers (the audit stage's), the
self-audit of ours and the second observer as the human reference.

Writes reports/results.json (the results in full), metrics/compare.json (derived from them for
`dvc metrics diff`), metrics/audit.json (the audit's verdicts), reports/report.md (with the
trainings: epochs, checkpointed epoch, time) and its figures.
"""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import json

from skunet.atomic import atomic_dir, atomic_file
from skunet.audit import PUBLISHED_YAML, check_own_metrics, compare_test_sets, implied_cells, read_published_audit
from skunet.baseline import environment, environment_differences
from skunet.checkpoints import run_context, training_summaries
from skunet.compare import (
    PAPER_RANKING,
    attach_intervals,
    attach_seeds,
    compare,
    flatten_for_dvc,
    load_reference,
    load_reproduced,
    missing_models,
)
from skunet.config import DATASETS, PROTOCOLS, load_params
from skunet.errors import SkunetError, exit_on_error
from skunet.report import (
    AUDIT_JSON,
    COMPARE_JSON,
    RESULTS_JSON,
    plot_bars,
    plot_differences,
    plot_qualitative,
    plot_roc,
    plot_training_curves,
    training_time,
    write_markdown_report,
)
from skunet.results import bootstrap_intervals, first_test_image, read_test_set, roc_curves, second_observer, test_pixels
from skunet.seeds import load_summary

FIGURES = Path("plots/figures")
REPORT = Path("reports/report.md")


@exit_on_error
def main() -> None:
    params = load_params()
    reference = load_reference(PUBLISHED_YAML)
    reproduced = load_reproduced("metrics", reference)
    # A partial run compares what exists: only the datasets with an evaluated model are read (the
    # other's data stages may not have run); the report names every cell still missing.
    present = [d for d in DATASETS if d in reproduced]
    if not present:
        raise SkunetError("metrics/: no metrics/<dataset>/<model>.json yet; run `dvc repro evaluate@<dataset>-<model>`"
                          " for a trained model first")
    tests = {d: read_test_set(Path("data/raw") / d) for d in present}  # each label read once
    pixels = {d: test_pixels(tests[d]) for d in present}
    self_audited = check_own_metrics(reproduced, pixels, Path("metrics"))  # raises when ours miscount
    results = {p: compare(reproduced, reference, params["compare"]["tolerances"], protocol=p) for p in PROTOCOLS}
    for protocol, by_dataset in bootstrap_intervals(Path("."), tests, reproduced, PAPER_RANKING,
                                                    params["compare"]["bootstrap"]).items():
        attach_intervals(results[protocol], by_dataset)
    seeds = load_summary(Path("seeds"), params["base"]["profile"])
    elsewhere = environment_differences(seeds["environment"], environment()) if seeds and seeds.get("environment") else []
    for result in results.values():
        attach_seeds(result, seeds, params["base"]["seed"], elsewhere)
    audit = read_published_audit(PUBLISHED_YAML)  # the audit stage's verdicts
    audit["implied"] = implied_cells(audit, reproduced)
    audit["self_audit"] = self_audited
    audit["test_sets"] = compare_test_sets(pixels)
    human = {d: h for d in present if (h := second_observer(tests[d])) is not None}

    # The figures, the report that links them and the results files are one result: all are
    # written beside their places and moved there together at the end, so a stage that fails part
    # way leaves the previous run's as they were, never new figures beside an old report.
    with (atomic_dir(FIGURES) as figures_dir, atomic_file(REPORT) as report, atomic_file(RESULTS_JSON) as results_json,
          atomic_file(COMPARE_JSON) as compare_json, atomic_file(AUDIT_JSON) as audit_json):
        figures: dict[str, Path] = {}

        def figure(caption: str, name: str) -> Path:
            """Where to draw a figure now; the report links the place it is moved to."""
            figures[caption] = FIGURES / name
            return figures_dir / name

        plot_bars(results["paper"], figure("Reproduced vs published", "bars.png"), human)
        plot_differences(results["paper"], figure("Differences between models", "differences.png"))
        for dataset in present:
            plot_roc(roc_curves(Path("plots/roc"), dataset, reproduced), dataset,
                     figure(f"ROC, {dataset}", f"roc_{dataset}.png"))
            shown = first_test_image(tests[dataset], Path("predictions") / dataset)
            plot_qualitative(shown["image"], shown["predictions"], shown["label"], shown["fov"],
                             figure(f"Predictions, {dataset}", f"qualitative_{dataset}.png"),
                             title=f"{dataset} test image {shown['stem']}",
                             threshold=params["evaluate"]["threshold"])
        training = training_summaries(Path("models"), Path("plots/train"))
        plot_training_curves(training, figure("Training curves", "training.png"))
        context = run_context(params["base"]["profile"], Path("models"))
        if training:
            context["training_time"] = f"{training_time(training)} (epoch times summed)"

        full = {"run": context, "protocols": results, "human": human, "audit": audit,
                "missing": missing_models(results["paper"], Path("metrics"))}
        write_markdown_report(full, report, figures, training)
        results_json.write_text(json.dumps(full, indent=2) + "\n")
        compare_json.write_text(json.dumps({p: flatten_for_dvc(r) for p, r in results.items()}, indent=2) + "\n")
        audit_json.write_text(json.dumps(audit, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
