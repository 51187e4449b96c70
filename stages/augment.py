"""augment@<dataset>: the paper's 25 augmentations per training image, data/augmented/<dataset>/.

Writes images.npy (N x 26, S, S, 3) uint8, labels.npy (N x 26, S, S) uint8 {0, 1},
records.json (source image and transform of every row), rows in transform-major order, and
libraries.json (the versions of the libraries that drew the augmentations: the same seed gives
other images under another OpenCV, so a checkpoint and the report carry them).
"""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import argparse
import json

from skunet.atomic import atomic_dir, read_array, reserved_array
from skunet.config import check_dataset, load_params
from skunet.data.augment import augment_dataset, build_augmentations, library_versions
from skunet.errors import exit_on_error


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    dataset = check_dataset(parser.parse_args().dataset)
    params = load_params()
    resized = Path("data/resized") / dataset

    images = read_array(resized / "train_images.npy", f"resize@{dataset}", shape=("N", "S", "S", 3))
    labels = read_array(resized / "train_labels.npy", f"resize@{dataset}", shape=(len(images), *images.shape[1:3]))
    pipelines = build_augmentations(params["augment"]["transforms"], images.shape[1])
    rows = len(images) * (1 + len(pipelines))
    with atomic_dir(Path("data/augmented") / dataset) as tmp:
        out_images = reserved_array(tmp / "images.npy", (rows, *images.shape[1:]))
        out_labels = reserved_array(tmp / "labels.npy", (rows, *labels.shape[1:]))
        records = augment_dataset(images, labels, pipelines, params["base"]["seed"], out_images, out_labels)
        out_images.flush()
        out_labels.flush()
        del out_images, out_labels
        (tmp / "records.json").write_text(json.dumps(records, indent=1) + "\n")
        (tmp / "libraries.json").write_text(json.dumps(library_versions(), indent=1) + "\n")


if __name__ == "__main__":
    main()
