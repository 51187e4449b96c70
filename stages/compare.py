"""compare: reproduced vs published, cell by cell; metrics/compare.json, reports/report.md (with the
trainings: epochs, checkpointed epoch, time), figures."""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import json

import numpy as np

from skunet.atomic import atomic_dir, atomic_file, damaged_output
from skunet.compare import compare, flatten_for_dvc, load_reference, load_reproduced
from skunet.config import DATASETS, MODELS, PROTOCOLS, load_params
from skunet.data.raw import load_manifest, read_png
from skunet.errors import exit_on_error, reason
from skunet.report import (
    COMPARE_JSON,
    plot_bars,
    plot_qualitative,
    plot_roc,
    plot_training_curves,
    training_time,
    write_markdown_report,
)
from skunet.training import run_context, training_summaries

FIGURES = Path("plots/figures")
REPORT = Path("reports/report.md")


def roc_curves(dataset: str, reproduced: dict) -> dict:
    curves = {}
    for model in MODELS:
        path = Path("plots/roc") / dataset / f"{model}.csv"
        if path.is_file():
            try:
                fpr, tpr = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1), unpack=True)
            except ValueError as err:
                raise damaged_output(path, f"not a ROC curve table ({reason(err)})",
                                     f"evaluate@{dataset}-{model}") from None
            auc = reproduced.get(dataset, {}).get(model, {}).get("paper", {}).get("auc")
            curves[model] = {"fpr": fpr, "tpr": tpr, "auc": auc}
    return curves


def qualitative(dataset: str, threshold: float, path: Path) -> None:
    """The paper's Fig. 5/6: the first test image, each model's prediction and its errors."""
    raw = Path("data/raw") / dataset
    stage = f"download@{dataset}"
    stem = load_manifest(raw)["test"][0]
    pngs = {model: Path("predictions") / dataset / model / f"{stem}.png" for model in MODELS}
    predictions = [(model, read_png(png, "L", f"evaluate@{dataset}-{model}") / 255.0)
                   for model, png in pngs.items() if png.is_file()]
    plot_qualitative(
        read_png(raw / "images" / f"{stem}.png", "RGB", stage),
        predictions,
        read_png(raw / "labels" / f"{stem}.png", "L", stage) > 127,
        read_png(raw / "fov" / f"{stem}.png", "L", stage) > 127,
        path,
        title=f"{dataset} test image {stem}",
        threshold=threshold,
    )


@exit_on_error
def main() -> None:
    params = load_params()
    reference = load_reference("published/paper.yaml")
    reproduced = load_reproduced("metrics", reference)
    tolerances = params["compare"]["tolerances"]
    results = {p: compare(reproduced, reference, tolerances, protocol=p) for p in PROTOCOLS}

    # The figures, the report that links them and compare.json are one result: all are written
    # beside their places and moved there together at the end, so a stage that fails part way
    # leaves the previous run's three as they were, never new figures beside an old report.
    with atomic_dir(FIGURES) as figures_dir, atomic_file(REPORT) as report, atomic_file(COMPARE_JSON) as summary:
        figures: dict[str, Path] = {}

        def figure(caption: str, name: str) -> Path:
            """Where to draw a figure now; the report links the place it is moved to."""
            figures[caption] = FIGURES / name
            return figures_dir / name

        plot_bars(results, figure("Reproduced vs published", "bars.png"))
        for dataset in DATASETS:
            plot_roc(roc_curves(dataset, reproduced), dataset, figure(f"ROC, {dataset}", f"roc_{dataset}.png"))
            qualitative(dataset, params["evaluate"]["threshold"],
                        figure(f"Predictions, {dataset}", f"qualitative_{dataset}.png"))

        training = training_summaries(Path("models"), Path("plots/train"))
        plot_training_curves(training, figure("Training curves", "training.png"))

        context = run_context(params["base"]["profile"], Path("models"))
        if training:
            context["training_time"] = f"{training_time(training)} (epoch times summed)"
        write_markdown_report(results, report, {**context, "figures": figures}, training)
        compare_json = {"run": context, **{p: flatten_for_dvc(r) for p, r in results.items()}}
        summary.write_text(json.dumps(compare_json, indent=2) + "\n")


if __name__ == "__main__":
    main()
