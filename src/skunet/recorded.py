"""What dvc.lock records against what a checkout has: the inputs of a stage's run (files and
folders by DVC's md5, parameters by value and YAML kind, as DVC compares them), and whether each
metrics file is the one its evaluate stage wrote.

`skunet check` refuses a metrics file that dvc.lock does not record as its evaluate stage's
output (edited by hand, or left by another run), and names the inputs that changed since one was
made (it is out of date: `dvc repro` brings it up to date). `skunet lease` and `skunet take` use
the same comparison for the trainings they carry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from skunet.config import DATASETS, MODELS, parse_yaml, yaml_problem
from skunet.errors import SkunetError


def same_value(a: Any, b: Any) -> bool:
    """Equal as DVC compares parameters: of the same kinds too (0 and 0.0 hash apart)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return _kind(a) == _kind(b) and a == b


def _kind(value: Any) -> str:
    """A YAML scalar's kind, whatever class the parser gave it (ruamel's ScalarFloat is a float)."""
    return next((k.__name__ for k in (bool, int, float, str) if isinstance(value, k)), type(value).__name__)


def folder_md5(root: Path, path: str) -> str | None:
    """DVC's md5 of the folder `path` in the checkout at `root` (the models package), made as
    `dvc status` makes it: .dvcignore heeded, so the bytecode beside the sources is left out.
    None where the checkout has no such folder."""
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build

    if not (root / path).is_dir():
        return None
    with Repo(str(root), config={"core": {"no_scm": True}}) as repo:  # a copy without git, too
        _, _, tree = build(repo.cache.local, repo.fs.join(repo.root_dir, path), repo.fs, "md5",
                           ignore=repo.dvcignore, dry_run=True)
    return tree.hash_info.value


def file_md5(path: Path) -> str | None:
    """A file's md5, as DVC 3 records it (of its bytes); None where there is no such file."""
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None


def other_inputs(root: Path, entry: dict[str, Any], seen: dict[tuple[str, str], Any] | None = None,
                 missing_differs: bool = True) -> list[str]:
    """The files, folders and parameters of a stage's run (a dvc.lock or run-cache entry) that the
    checkout at `root` has otherwise (another commit, or params.yaml or the code edited since).
    Files and folders are compared by DVC's md5; the data (``data/...``) are left to the caller.
    `missing_differs`: whether a file or folder the checkout lacks counts as changed (a fresh
    clone has no models/ or data/). `seen`: what was read of this checkout so far, kept between
    calls (filled here)."""
    differ, seen = [], {} if seen is None else seen
    for dep in entry.get("deps") or []:
        md5, path = str(dep.get("md5", "")), dep["path"]
        if path.startswith("data/"):
            continue
        kind = "folder" if md5.endswith(".dir") else "file"
        if (kind, path) not in seen:
            seen[kind, path] = folder_md5(root, path) if kind == "folder" else file_md5(root / path)
        here = seen[kind, path]
        if here != md5 and (here is not None or missing_differs):
            differ.append(path)
    for name, values in (entry.get("params") or {}).items():
        if ("params", name) not in seen:
            seen["params", name] = parse_yaml((root / name).read_text()) if (root / name).is_file() else {}
        for key, value in values.items():
            here = seen["params", name]
            for part in key.split("."):
                here = here.get(part) if isinstance(here, dict) else None
            if not same_value(here, value):
                differ.append(f"{name}:{key}")
    return differ


def lock_stages(root: Path) -> dict[str, Any]:
    path = root / "dvc.lock"
    if not path.is_file():
        return {}
    try:
        stages = parse_yaml(path.read_text(encoding="utf-8")).get("stages")
    except Exception as err:  # noqa: BLE001 - any parse failure is the same one line
        raise SkunetError(f"{path}: {yaml_problem(err)}; restore it with `git checkout dvc.lock`") from None
    if not isinstance(stages, dict):
        raise SkunetError(f"{path}: no 'stages' mapping; restore it with `git checkout dvc.lock`")
    return stages


def check_metrics_recorded(root: Path) -> list[str]:
    """Refuse (SkunetError, one line) the first ``metrics/<dataset>/<model>.json`` under `root`
    that dvc.lock does not record as the output of ``evaluate@<dataset>-<model>``, byte for byte
    (md5): such numbers did not come from the run dvc.lock describes. Return one line per group of
    metrics files that did, but whose inputs changed since (parameters, code or the model, along
    the chain download -> resize -> augment -> train -> evaluate, as far as this checkout has
    them), grouped by what changed: the numbers stand for an earlier state of the project, and
    `dvc repro` brings them up to date."""
    stages, seen = lock_stages(root), {}
    by_stage: dict[str, list[str]] = {}  # each stage's changed inputs, asked once (a data stage serves 3 models)
    stale: dict[tuple[str, ...], list[str]] = {}
    for dataset in DATASETS:
        for model in MODELS:
            rel = f"metrics/{dataset}/{model}.json"
            if not (root / rel).is_file():
                continue
            stage = f"evaluate@{dataset}-{model}"
            entry = stages.get(stage)
            recorded = next((o.get("md5") for o in (entry or {}).get("outs") or [] if o.get("path") == rel), None)
            if recorded is None:
                raise SkunetError(f"{rel}: dvc.lock records no {stage} that wrote it, so nothing says how it was made;"
                                  f" run `dvc repro {stage}` (or `git checkout` it together with dvc.lock)")
            if file_md5(root / rel) != recorded:
                raise SkunetError(f"{rel}: not the file dvc.lock records for {stage} (edited since, or left by another"
                                  f" run); run `dvc repro {stage}` (or `git checkout` it together with dvc.lock)")
            changed: list[str] = []
            for name in (f"download@{dataset}", f"resize@{dataset}", f"augment@{dataset}",
                         f"train@{dataset}-{model}", stage):
                if name not in by_stage:
                    by_stage[name] = other_inputs(root, stages.get(name) or {}, seen, missing_differs=False)
                changed += [what for what in by_stage[name] if what not in changed]
            if changed:
                stale.setdefault(tuple(changed), []).append(rel)
    return [f"{', '.join(files)} {'is' if len(files) == 1 else 'are'} out of date: made before {', '.join(changed)}"
            f" changed; `dvc repro` brings {'it' if len(files) == 1 else 'them'} up to date"
            for changed, files in stale.items()]


def check_results_recorded(root: Path, rel: str) -> None:
    """Refuse (SkunetError, one line) a comparison under `root` that is not, byte for byte, the one
    dvc.lock records as the compare stage's output, or whose inputs (metrics, parameters such as
    the tolerances, the published tables, the code) changed since it was made: the README would
    publish a comparison that no run made, or one of an earlier state of the project."""
    path, entry = root / rel, lock_stages(root).get("compare")
    recorded = next((o.get("md5") for o in (entry or {}).get("outs") or [] if o.get("path") == rel), None)
    if recorded is None:
        raise SkunetError(f"{path}: dvc.lock records no compare stage that wrote it, so nothing says how it was made;"
                          " run `dvc repro compare`, then `skunet readme`")
    if file_md5(path) != recorded:
        raise SkunetError(f"{path}: not the file dvc.lock records for the compare stage (edited since, or left by"
                          " another run); run `dvc repro -f -s compare`, then `skunet readme`")
    changed = other_inputs(root, entry, missing_differs=False)
    if changed:
        raise SkunetError(f"{path}: out of date, made before {', '.join(changed)} changed; run `dvc repro` to compare"
                          " again, then `skunet readme`")
