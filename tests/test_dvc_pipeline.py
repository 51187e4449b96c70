"""dvc.yaml against the code: every params value reaches DVC's run-cache key, every stage depends on
each module of src/ it imports and runs the copy of the checkout it is in, and a changed input
size re-runs resize (and is restored from the run cache when changed back)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from modulefinder import ModuleFinder
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml
from dvc.repo import Repo
from dvc.stage.cache import _get_cache_hash
from dvc.stage.serialize import _serialize_params_values, split_params_deps

from conftest import ROOT, project_copy

def _stages():
    with Repo(str(ROOT)) as repo:
        return list(repo.index.stages)


STAGES = _stages()


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _leaves(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _leaves(sub, (*path, i))
    else:
        yield path


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None:
        return 0
    return f"{value}-changed"


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.addressing)
def test_every_params_value_changes_the_run_cache_key(stage):
    """DVC's run cache drops params keys named `size` or `nfiles` at any depth before hashing
    (treeverse/dvc#10296): a stage reading such a key would be "restored" from the cache of
    another value. Hash this stage's params through DVC's own key function, change each leaf in
    turn, and require a new key."""
    with Repo(str(ROOT)):
        params, _ = split_params_deps(stage)
        for dep in params:
            dep.fill_values(dep.read_params())
        lock = {"cmd": stage.cmd, "params": _serialize_params_values(params)}
    if not lock["params"]:  # a stage of no params (the audit of published/paper.yaml) loads none
        assert "load_params" not in (ROOT / stage.cmd.split()[1]).read_text(), f"{stage.addressing} declares no params"
        return
    key = _get_cache_hash(copy.deepcopy(lock), key=True)
    leaves = list(_leaves(lock["params"]))
    assert leaves
    for path in leaves:
        edited = copy.deepcopy(lock)
        _set(edited["params"], path, _changed(_get(edited["params"], path)))
        assert _get_cache_hash(edited, key=True) != key, (
            f"{stage.addressing}: params value {'.'.join(map(str, path))} does not reach DVC's "
            "run-cache key; rename the key (DVC drops `size` and `nfiles`)"
        )


def _params_read(script: Path) -> set[tuple[str, ...]]:
    """The params keys a stage script reads by subscript: `params["base"]["profile"]` or
    `load_params()["evaluate"]` as ("base", "profile") or ("evaluate",), a key that is not a
    string constant (`[dataset]`) as "*". Params handed whole to the library are not followed."""
    import ast

    tree = ast.parse(script.read_text())
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    chains = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Subscript) or id(node) in inner:
            continue
        keys = []
        while isinstance(node, ast.Subscript):
            key = node.slice
            keys.append(key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else "*")
            node = node.value
        is_params = isinstance(node, ast.Name) and node.id == "params"
        is_load = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_params"
        if is_params or is_load:
            chains.add(tuple(reversed(keys)))
    return chains


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.addressing)
def test_each_stage_declares_the_params_its_script_reads(stage):
    """A key read but not declared would not reach the run-cache key: a changed value would be
    "restored" from the cache of the old one."""
    script = ROOT / stage.cmd.split()[1]
    params, _ = split_params_deps(stage)
    declared = [tuple(key.split(".")) for dep in params for key in dep.params]
    covered = lambda chain: any(len(d) <= len(chain) and all(c in (k, "*") for k, c in zip(d, chain)) for d in declared)
    read = _params_read(script)
    assert read or stage.name.startswith("train") or "load_params" not in script.read_text(), \
        f"{script} reads no params by key"
    uncovered = sorted(".".join(chain) for chain in read if not covered(chain))
    assert not uncovered, f"{stage.addressing} reads params {uncovered} that dvc.yaml does not declare"


def _imported_modules(script: Path) -> set[str]:
    """The files of src/ that `script` imports, at any depth (imports inside functions too)."""
    finder = ModuleFinder(path=[str(ROOT / "src")])
    finder.run_script(str(script))
    return {
        Path(module.__file__).relative_to(ROOT).as_posix()
        for name, module in finder.modules.items()
        if module.__file__ and name.split(".")[0] == "skunet"
    }


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.addressing)
def test_each_stage_depends_on_every_module_it_imports(stage):
    script = ROOT / stage.cmd.split()[1]
    deps = [dep.def_path for dep in stage.deps if not hasattr(dep, "params")]
    assert script.relative_to(ROOT).as_posix() in deps
    imported = _imported_modules(script)
    assert imported, f"{script} imports nothing from src/"
    uncovered = [f for f in sorted(imported) if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]
    assert not uncovered, f"{stage.addressing} imports {uncovered} but dvc.yaml does not list them as deps"


@pytest.fixture
def checkout(tmp_path):
    """A copy of the project (its tracked files) in a fresh git repository, whose library raises
    a marker error as soon as params are loaded or the published values audited: any stage that
    runs this copy's code says so."""
    work = project_copy(tmp_path / "checkout")
    config = work / "src" / "skunet" / "config.py"
    text = config.read_text()
    anchor = '    """Read and validate params.yaml."""\n'
    assert anchor in text
    config.write_text(text.replace(anchor, anchor + '    raise SkunetError("edited in this checkout")\n'))
    audit = work / "src" / "skunet" / "audit.py"  # the audit stage loads no params
    text = audit.read_text()
    anchor = '    A row has a verdict for each assumption of its dataset (:data:`AUDIT_ASSUMPTIONS`).\n    """\n'
    assert anchor in text
    audit.write_text(text.replace(anchor, anchor + '    raise SkunetError("edited in this checkout")\n'))
    return work


def _env_without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"DVC_NO_ANALYTICS": "1"}


@pytest.mark.slow
def test_every_stage_script_runs_the_library_of_its_own_checkout(checkout):
    # one stage per script: the stages of a matrix run the same script with other arguments
    for stage in {stage.cmd.split()[1]: stage for stage in reversed(STAGES)}.values():
        cmd = stage.cmd.split()
        result = subprocess.run([sys.executable, *cmd[1:]], cwd=checkout, env=_env_without_pythonpath(),
                                capture_output=True, text=True)
        assert result.returncode == 2, (stage.addressing, result.stderr[-1500:])
        assert result.stderr.strip() == "error: edited in this checkout", (stage.addressing, result.stderr[-1500:])


@pytest.mark.slow
def test_dvc_repro_in_a_copy_runs_the_copy(checkout):
    result = subprocess.run(["dvc", "repro", "download@drive"], cwd=checkout, env=_env_without_pythonpath(),
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "error: edited in this checkout" in result.stderr + result.stdout


@pytest.mark.slow
def test_a_changed_input_size_reruns_resize_and_changing_it_back_restores_it(tmp_path, mirror):
    work = project_copy(tmp_path / "work")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "SKUNET_DATA_MIRROR": str(mirror)}

    def repro_at(size: int) -> str:
        params = yaml.safe_load((work / "params.yaml").read_text())
        params["resize"]["drive"]["input_size"] = size
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        result = subprocess.run(["dvc", "repro", "resize@drive"], cwd=work, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        status = subprocess.run(["dvc", "status", "resize@drive"], cwd=work, env=env, capture_output=True, text=True)
        assert "up to date" in status.stdout, status.stdout
        assert np.load(work / "data/resized/drive/train_images.npy", mmap_mode="r").shape[1:] == (size, size, 3)
        assert json.loads((work / "data/resized/drive/meta.json").read_text())["size"] == size
        return result.stdout

    assert "Running stage 'resize@drive'" in repro_at(32)
    assert "Running stage 'resize@drive'" in repro_at(24)
    back = repro_at(32)
    assert "Stage 'resize@drive' is cached - skipping run, checking out outputs" in back, back


def _drive_trainings_committed(tmp_path: Path, models: tuple[str, ...]) -> Callable[..., str]:
    """A project copy whose DRIVE trainings of `models` dvc.lock records as done, over stand-ins
    for their data and outputs; returns a runner of DVC commands there (their stdout)."""
    project = project_copy(tmp_path / "project")
    for model in models:
        for out in (f"models/drive/{model}.pt", f"plots/train/drive/{model}.csv"):
            (project / out).parent.mkdir(parents=True, exist_ok=True)
            (project / out).write_text(f"{model}\n")
    (project / "data/augmented/drive").mkdir(parents=True)
    (project / "data/augmented/drive/images.npy").write_text("stand-in\n")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def dvc(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    dvc("commit", "-f", *(f"train@drive-{model}" for model in models))  # dvc.lock records them as they are
    return dvc


@pytest.mark.slow
def test_dropblock_keep_rate_retrains_the_dropblock_models_only(tmp_path):
    """DropBlock's keep rate sits under the two models that have DropBlock: after a change of
    DRIVE's rate for both, `dvc status` has train@drive-unet up to date and the other two not."""
    models = ("unet", "unet_dropblock", "skunet")
    dvc = _drive_trainings_committed(tmp_path, models)
    trainings = [f"train@drive-{model}" for model in models]
    assert "up to date" in dvc("status", *trainings)
    project = tmp_path / "project"
    params = yaml.safe_load((project / "params.yaml").read_text())
    for model in ("unet_dropblock", "skunet"):
        params["models"][model]["dropblock"]["keep_prob"]["drive"] = 0.9
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(dvc("status", "--json", *trainings))
    assert set(status) == {"train@drive-unet_dropblock", "train@drive-skunet"}, status


@pytest.mark.slow
def test_python_bytecode_beside_the_sources_leaves_the_trainings_up_to_date(tmp_path):
    """Running a stage writes src/skunet/models/__pycache__/*.pyc, whose bytes hold the machine's
    paths and timestamps. In the models package's folder hash they made a training recorded on
    one machine (a lease, a queued experiment's workspace) another run here, and the run cache
    missed: DVC ignores them (.dvcignore)."""
    dvc = _drive_trainings_committed(tmp_path, ("unet",))
    project = tmp_path / "project"
    assert not list(project.glob("src/**/__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", "src"], cwd=project, check=True)
    assert list(project.glob("src/skunet/models/__pycache__/*.pyc"))
    assert json.loads(dvc("status", "--json", "train@drive-unet")) == {}


def test_every_plot_a_stage_writes_says_its_axes():
    """`dvc plots show` draws each plot file by itself too; without x and y it drew the last column
    against the row number (a threshold against `step`, peak memory against `step`)."""
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        for entry in stage.get("plots") or []:
            (path, props), = entry.items()
            assert {"x", "y"} <= set(props), f"{name}: {path} has no x and y"
