"""compare: reproduced vs published, cell by cell, under both protocols; reports/results.json (the
results in full), metrics/compare.json (derived from them for `dvc metrics diff`),
reports/report.md (with the trainings: epochs, checkpointed epoch, time) and its figures."""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import json

from skunet.atomic import atomic_dir, atomic_file
from skunet.checkpoints import run_context, training_summaries
from skunet.compare import compare, flatten_for_dvc, load_reference, load_reproduced
from skunet.config import DATASETS, PROTOCOLS, load_params
from skunet.errors import exit_on_error
from skunet.report import (
    COMPARE_JSON,
    RESULTS_JSON,
    plot_bars,
    plot_qualitative,
    plot_roc,
    plot_training_curves,
    training_time,
    write_markdown_report,
)
from skunet.results import first_test_image, roc_curves

FIGURES = Path("plots/figures")
REPORT = Path("reports/report.md")


@exit_on_error
def main() -> None:
    params = load_params()
    reference = load_reference("published/paper.yaml")
    reproduced = load_reproduced("metrics", reference)
    tolerances = params["compare"]["tolerances"]
    threshold = params["evaluate"]["threshold"]
    results = {p: compare(reproduced, reference, tolerances, protocol=p) for p in PROTOCOLS}

    # The figures, the report that links them and the results files are one result: all are
    # written beside their places and moved there together at the end, so a stage that fails part
    # way leaves the previous run's as they were, never new figures beside an old report.
    with (atomic_dir(FIGURES) as figures_dir, atomic_file(REPORT) as report,
          atomic_file(RESULTS_JSON) as results_json, atomic_file(COMPARE_JSON) as compare_json):
        figures: dict[str, Path] = {}

        def figure(caption: str, name: str) -> Path:
            """Where to draw a figure now; the report links the place it is moved to."""
            figures[caption] = FIGURES / name
            return figures_dir / name

        plot_bars(results["paper"], figure("Reproduced vs published", "bars.png"))
        for dataset in DATASETS:
            plot_roc(roc_curves(Path("plots/roc"), dataset, reproduced), dataset,
                     figure(f"ROC, {dataset}", f"roc_{dataset}.png"))
            shown = first_test_image(Path("data/raw") / dataset, Path("predictions") / dataset)
            plot_qualitative(shown["image"], shown["predictions"], shown["label"], shown["fov"],
                             figure(f"Predictions, {dataset}", f"qualitative_{dataset}.png"),
                             title=f"{dataset} test image {shown['stem']}", threshold=threshold)
        training = training_summaries(Path("models"), Path("plots/train"))
        plot_training_curves(training, figure("Training curves", "training.png"))
        context = run_context(params["base"]["profile"], Path("models"))
        if training:
            context["training_time"] = f"{training_time(training)} (epoch times summed)"

        write_markdown_report(results, report, {**context, "figures": figures}, training)
        results_json.write_text(json.dumps({"run": context, "protocols": results}, indent=2) + "\n")
        compare_json.write_text(json.dumps({p: flatten_for_dvc(r) for p, r in results.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
