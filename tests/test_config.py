"""params.yaml validation: misspelled keys and bad values are named, the smoke override applies."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import ROOT
from skunet.config import check_model, deep_merge, load_params, validate
from skunet.errors import SkunetError

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
        ("models.skunet.lr", -0.001, r"models.skunet.lr = -0.001 must be a number in \(0"),
        ("train.drive.keep_prob", 0.0, r"train.drive.keep_prob = 0.0 must be a number in \(0, 1\]"),
        ("train.chase.keep_prob", 1.2, r"train.chase.keep_prob = 1.2"),
        ("train.common.epochs", 2.5, "train.common.epochs = 2.5 must be an integer"),
        ("split.mode", "random", "split.mode = 'random' must be one of tail, by_source"),
        ("models.unet.lr", float("inf"), "models.unet.lr = inf must be a number"),
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
