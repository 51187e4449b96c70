"""params.yaml validation: misspelled keys and bad values are named, the smoke override applies."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import yaml

from conftest import ROOT, run_stage, write_params
from skunet.cli import smoke_params
from skunet.config import ModelConfig, check_model, deep_merge, load_params, model_config, parse_yaml, validate
from skunet.errors import SkunetError
from test_training import make_data

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_committed_params_are_valid():
    load_params(ROOT / "params.yaml")


def _bad(path: str, value):
    params = copy.deepcopy(PARAMS)
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    return params


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("models.skunet.lr", -0.001, r"models.skunet.lr = -0.001: input should be greater than 0$"),
        ("models.skunet.dropblock.keep_prob.drive", 0.0,
         r"models.skunet.dropblock.keep_prob.drive = 0.0: input should be greater than 0$"),
        ("models.unet_dropblock.dropblock.keep_prob.chase", 1.2,
         r"models.unet_dropblock.dropblock.keep_prob.chase = 1.2: input should be less than or equal to 1$"),
        ("train.common.epochs", 2.5, "train.common.epochs = 2.5: input should be a valid integer"),
        ("split.mode", "random", "split.mode = 'random': input should be 'tail' or 'by_source'"),
        ("models.unet.lr", float("inf"), "models.unet.lr = inf: input should be a finite number"),
        ("models.skunet.sk.kernels", [3, 4], r"models.skunet.sk.kernels.1 = 4: must be odd for 'same' padding"),
        ("models.skunet.depth", 9, "models.skunet.depth = 9: input should be less than or equal to 8"),
        ("base.seed", True, "base.seed = True: input should be a valid integer"),
        ("base.seed", 10**23, "base.seed = 100000000000000000000000: input should be less than 4294967296"),
        ("compare.bootstrap.seed", 2**32, "compare.bootstrap.seed = 4294967296: input should be less than 4294967296"),
        ("compare.tolerances.f1", 5.0, "compare.tolerances.f1 = 5.0: input should be less than or equal to 1"),
        ("resize.drive.input_size", 40000, "resize.drive.input_size = 40000: input should be less than or equal to 4096"),
        ("augment.transforms", "all", "augment.transforms = 'all': input should be a valid list"),
        ("augment.copies", 10, r"unknown key 'augment.copies' \(allowed here: transforms\)"),
    ],
)
def test_bad_values_are_named(path, value, message):
    with pytest.raises(SkunetError, match=message):
        validate(_bad(path, value))


def test_misspelled_key_is_named_with_the_allowed_keys():
    params = copy.deepcopy(PARAMS)
    params["train"]["common"]["epoch"] = params["train"]["common"].pop("epochs")
    with pytest.raises(SkunetError, match=r"unknown key 'train.common.epoch' \(allowed here: epochs,"):
        validate(params)


def test_unknown_model_lists_the_allowed_ones():
    with pytest.raises(SkunetError, match=r"unknown model 'sknet' \(allowed: unet, unet_dropblock, skunet\)"):
        check_model("sknet")


def test_smoke_override_applies_and_validates():
    override = yaml.safe_load((ROOT / "params.smoke.yaml").read_text())
    merged = deep_merge(PARAMS, override)
    validate(merged)
    assert merged["base"]["profile"] == "smoke"
    assert merged["resize"]["drive"]["input_size"] < PARAMS["resize"]["drive"]["input_size"]
    with pytest.raises(SkunetError, match="override: unknown key 'train.common.epohcs'"):
        deep_merge(PARAMS, {"train": {"common": {"epohcs": 1}}})


@pytest.mark.parametrize("text", [
    "lr: 1e-3\nb: 5E+2\nc: 1.0e3\nd: 10\ne: 0.001\nf: 1e3x",  # YAML 1.1 (PyYAML) reads 1e-3 as a string
    "seed: 042\nn: 0450\no: 0o17\nx: 0x1f",  # YAML 1.1 reads 042 as octal 34
    "fast_path: yes\ncompile: off\nmode: null\nflag: true",  # and yes / off as booleans
    "a: [1, 2.5, -3]\nb: {c: .5, d: +7, e: 1_000}",
])
def test_params_are_read_as_dvc_reads_them(text):
    """What a stage reads is what DVC hashed into its run-cache key."""
    from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

    assert parse_yaml(text) == dvc_parse_yaml(text, "params.yaml")
    assert parse_yaml("seed: 042")["seed"] == 42


def test_a_number_without_a_dot_reaches_the_stage_as_a_number(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    assert "    lr: 0.001" in text
    (tmp_path / "params.yaml").write_text(text.replace("    lr: 0.001", "    lr: 1e-3"))
    assert load_params(tmp_path / "params.yaml")["models"]["skunet"]["lr"] == 0.001


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("  seed: 42\n", "  seed: 42\n  seed: 7\n"),
     r"params.yaml: not valid YAML \(line \d+, column 3: found duplicate key \"seed\" with value \"7\" \(original value: \"42\"\)\); fix it there"),
    (lambda t: t.replace("  seed: 42\n", "\tseed: 42\n"),
     r"params.yaml: not valid YAML \(line \d+, column 1: found character '\\t' that cannot start any token\); fix it there"),
])
def test_malformed_params_name_the_line_and_column(tmp_path, edit, message):
    (tmp_path / "params.yaml").write_text(edit((ROOT / "params.yaml").read_text()))
    with pytest.raises(SkunetError, match=message):
        load_params(tmp_path / "params.yaml")


def test_the_smoke_override_reads_floats_without_a_dot(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "params.smoke.yaml").write_text("models:\n  unet:\n    lr: 5e-4\n")
    assert smoke_params(tmp_path)["models"]["unet"]["lr"] == 0.0005


@pytest.mark.slow
def test_a_stage_runs_with_lr_1e_3(tmp_path):
    write_params(tmp_path, {"train": {"common": {"epochs": 1}}, "models": {"unet": {"base_width": 4, "depth": 2}}})
    text = (tmp_path / "params.yaml").read_text()
    assert text.count("lr: 0.001") == 3
    (tmp_path / "params.yaml").write_text(text.replace("lr: 0.001", "lr: 1e-3"))
    make_data(tmp_path / "data" / "augmented" / "drive")
    result = run_stage("train.py", "drive", "unet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = torch.load(tmp_path / "models" / "drive" / "unet.pt", weights_only=True)
    assert checkpoint["train_config"]["lr"] == 0.001


def test_a_missing_key_is_named():
    params = copy.deepcopy(PARAMS)
    del params["models"]["skunet"]["sk"]["reduction"]
    with pytest.raises(SkunetError, match=r"missing key 'models.skunet.sk.reduction'; add it"):
        validate(params)


def test_each_network_takes_its_own_settings_and_the_keep_rate_of_its_dataset():
    params = load_params(ROOT / "params.yaml")
    for dataset in ("drive", "chase"):
        assert model_config(params, dataset, "unet") == ModelConfig(name="unet")  # no DropBlock to take
        for model in ("unet_dropblock", "skunet"):
            keep = params["models"][model]["dropblock"]["keep_prob"][dataset]
            assert model_config(params, dataset, model).dropblock.keep_prob == keep
    assert model_config(params, "chase", "skunet").dropblock.keep_prob == 0.80  # the paper's rates
    assert model_config(params, "drive", "skunet").dropblock.keep_prob == 0.85


@pytest.mark.parametrize(("text", "what"), [("", "empty"), ("- base\n", "a list"), ("42\n", "an int")])
def test_a_params_file_without_sections_says_what_belongs_there(tmp_path, text, what):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(SkunetError, match=re.escape(
            f"params.yaml: {what}, where a mapping of sections (base, download, resize, augment, split, train, models,"
            " evaluate, compare) belongs; restore it (`git checkout params.yaml`)")):
        load_params(tmp_path / "params.yaml")

