"""resize@<dataset>: bilinear resize to the model's square input, data/resized/<dataset>/."""

import argparse
from pathlib import Path

from skunet.config import check_dataset, load_params
from skunet.data.resize import resize_dataset
from skunet.errors import exit_on_error


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    dataset = check_dataset(parser.parse_args().dataset)
    size = load_params()["resize"][dataset]["size"]

    resize_dataset(Path("data/raw") / dataset, Path("data/resized") / dataset, size)


if __name__ == "__main__":
    main()
