"""evaluate@<dataset>-<model>: predictions, metrics under the `paper` and `fov` protocols, curves.

Writes predictions/<dataset>/<model>/<stem>.png, metrics/<dataset>/<model>.json and
plots/{per_image,roc,pr}/<dataset>/<model>.csv.
"""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import argparse

from skunet.config import check_dataset, check_model, load_params
from skunet.errors import exit_on_error
from skunet.evaluation import evaluate_model
from skunet.checkpoints import load_checkpoint
from skunet.devices import pick_device


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("model")
    args = parser.parse_args()
    dataset, model_name = check_dataset(args.dataset), check_model(args.model)
    section = load_params()["evaluate"]

    device = pick_device()
    model, _ = load_checkpoint(Path("models") / dataset / f"{model_name}.pt", device)
    evaluate_model(
        model,
        resized_dir=Path("data/resized") / dataset,
        predictions_dir=Path("predictions") / dataset / model_name,
        metrics_path=Path("metrics") / dataset / f"{model_name}.json",
        plots_dir=Path("plots"),
        name=f"{dataset}/{model_name}",
        threshold=section["threshold"],
        curve_points=section["curve_points"],
        device=device,
    )


if __name__ == "__main__":
    main()
