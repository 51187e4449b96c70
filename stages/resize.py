"""resize@<dataset>: bilinear resize to the model's square input, data/resized/<dataset>/."""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import argparse

from skunet.config import check_dataset, load_params
from skunet.data.resize import resize_dataset
from skunet.errors import exit_on_error


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    dataset = check_dataset(parser.parse_args().dataset)
    size = load_params()["resize"][dataset]["input_size"]

    resize_dataset(Path("data/raw") / dataset, Path("data/resized") / dataset, size)


if __name__ == "__main__":
    main()
