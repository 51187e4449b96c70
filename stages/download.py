"""download@<dataset>: find and verify the archive, normalise it into data/raw/<dataset>/."""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import argparse

from skunet.config import check_dataset, load_params
from skunet.data.raw import read_archives, write_raw
from skunet.data.sources import parse_sources, resolve
from skunet.errors import exit_on_error


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    dataset = check_dataset(parser.parse_args().dataset)
    section = load_params()["download"][dataset]

    sources = parse_sources(section["sources"], f"download.{dataset}.sources")
    archives = resolve(sources, section["help"])
    raw = read_archives(dataset, [path for path, _ in archives])
    raw.archives = [{"name": f.name, "sha256": f.sha256} for _, f in archives]
    write_raw(raw, Path("data/raw") / dataset)


if __name__ == "__main__":
    main()
