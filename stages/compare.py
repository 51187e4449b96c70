"""compare: reproduced vs published, cell by cell; metrics/compare.json, reports/report.md (with the
trainings: epochs, checkpointed epoch, time), figures."""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import json

import numpy as np

from skunet.atomic import atomic_file, damaged_output
from skunet.compare import compare, flatten_for_dvc, load_reference, load_reproduced
from skunet.config import DATASETS, MODELS, PROTOCOLS, load_params
from skunet.data.raw import load_manifest, read_png
from skunet.errors import exit_on_error, reason
from skunet.report import (
    plot_bars,
    plot_qualitative,
    plot_roc,
    plot_training_curves,
    training_time,
    write_markdown_report,
)
from skunet.training import run_context, training_summaries

FIGURES = Path("plots/figures")


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

    figures = {"Reproduced vs published": plot_bars(results, FIGURES / "bars.png")}
    for dataset in DATASETS:
        figures[f"ROC, {dataset}"] = plot_roc(roc_curves(dataset, reproduced), dataset, FIGURES / f"roc_{dataset}.png")
        qualitative(dataset, params["evaluate"]["threshold"], FIGURES / f"qualitative_{dataset}.png")
        figures[f"Predictions, {dataset}"] = FIGURES / f"qualitative_{dataset}.png"

    training = training_summaries(Path("models"), Path("plots/train"))
    figures["Training curves"] = plot_training_curves(training, FIGURES / "training.png")

    context = run_context(params["base"]["profile"], Path("models"))
    if training:
        context["training_time"] = f"{training_time(training)} (epoch times summed)"
    report_context = {**context, "figures": figures}
    write_markdown_report(results, Path("reports/report.md"), report_context, training)
    compare_json = {"run": context, **{p: flatten_for_dvc(r) for p, r in results.items()}}
    with atomic_file(Path("metrics/compare.json")) as tmp:
        tmp.write_text(json.dumps(compare_json, indent=2) + "\n")


if __name__ == "__main__":
    main()
