"""params.yaml: loading and validation against an explicit schema.

Every key is checked before any work starts, so a misspelled key or an out-of-range value stops a
stage with one line naming the key and what is allowed, instead of a default silently used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from skunet.errors import SkunetError

DATASETS = ("drive", "chase")
MODELS = ("unet", "unet_dropblock", "skunet")
PROTOCOLS = ("paper", "fov")


@dataclass(frozen=True)
class Number:
    """A number in an interval; `integer` requires an int."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.lo == -math.inf and self.hi == math.inf:
            return kind
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"{kind} in {left}{self.lo}, {self.hi}{right}"

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below


@dataclass(frozen=True)
class OneOf:
    choices: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))

    def ok(self, value: Any) -> bool:
        return value in self.choices


@dataclass(frozen=True)
class Kind:
    """Any value of a Python type (validated further by the code that uses it)."""

    type_: type | tuple[type, ...]
    name: str

    def describe(self) -> str:
        return self.name

    def ok(self, value: Any) -> bool:
        return isinstance(value, self.type_) and not (
            isinstance(value, bool) and self.type_ is not bool
        )


@dataclass(frozen=True)
class Pair:
    """A list of two numbers."""

    item: Number

    def describe(self) -> str:
        return f"a list of two numbers, each {self.item.describe()}"

    def ok(self, value: Any) -> bool:
        return isinstance(value, list) and len(value) == 2 and all(self.item.ok(v) for v in value)


POSITIVE_INT = Number(lo=1, integer=True)
NON_NEGATIVE_INT = Number(lo=0, integer=True)
POSITIVE = Number(lo=0, lo_open=True)
FRACTION_OPEN = Number(lo=0, hi=1, lo_open=True, hi_open=True)
KEEP_PROB = Number(lo=0, hi=1, lo_open=True)
BOOL = Kind(bool, "true or false")

_UNET = {"lr": POSITIVE, "base_width": POSITIVE_INT, "depth": Number(lo=2, hi=8, integer=True)}
_DROPBLOCK = {**_UNET, "block_size": POSITIVE_INT}
_SKUNET = {
    **_DROPBLOCK,
    "sk_first_kernel": OneOf((1, 3, 5, 7)),
    "sk_kernels": Pair(Number(lo=1, integer=True)),
    "sk_dilations": Pair(Number(lo=1, integer=True)),
    "sk_reduction": POSITIVE_INT,
    "sk_min_dim": POSITIVE_INT,
}

SCHEMA: dict[str, Any] = {
    "base": {"seed": NON_NEGATIVE_INT, "profile": OneOf(("paper", "smoke"))},
    "download": {
        ds: {"sources": Kind(list, "a list of sources"), "help": Kind(str, "a text")}
        for ds in DATASETS
    },
    "resize": {ds: {"input_size": Number(lo=16, integer=True)} for ds in DATASETS},
    # The transforms are validated where they are built (skunet.data.augment), with their names.
    "augment": Kind(dict, "a mapping"),
    "split": {"validation_fraction": FRACTION_OPEN, "mode": OneOf(("tail", "by_source"))},
    "train": {
        "common": {
            "epochs": POSITIVE_INT,
            "loss": OneOf(("bce",)),
            "optimizer": OneOf(("adam",)),
            "scheduler": {
                "monitor": OneOf(("val_loss",)),
                "factor": FRACTION_OPEN,
                "patience": NON_NEGATIVE_INT,
                "min_lr": Number(lo=0),
            },
            "max_train_samples": NON_NEGATIVE_INT,
            "fast_path": BOOL,
            "compile": BOOL,
        },
        **{ds: {"batch_size": POSITIVE_INT, "keep_prob": KEEP_PROB} for ds in DATASETS},
    },
    "models": {"unet": _UNET, "unet_dropblock": _DROPBLOCK, "skunet": _SKUNET},
    "evaluate": {"threshold": FRACTION_OPEN, "curve_points": Number(lo=2, integer=True)},
    "compare": {"tolerances": {m: Number(lo=0) for m in ("f1", "accuracy", "auc")}},
}


def validate(params: Mapping[str, Any], source: str = "params.yaml") -> None:
    """Raise SkunetError naming the first key that is missing, unknown or out of range."""
    _validate(params, SCHEMA, prefix="", source=source)


def _validate(value: Any, schema: Any, prefix: str, source: str) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, Mapping):
            raise SkunetError(f"{source}: '{prefix}' must be a mapping with keys {', '.join(schema)}")
        for key in value:
            if key not in schema:
                raise SkunetError(
                    f"{source}: unknown key '{prefix}{key}' (allowed here: {', '.join(schema)});"
                    " fix the spelling"
                )
        for key, sub in schema.items():
            if key not in value:
                raise SkunetError(f"{source}: missing key '{prefix}{key}'; add it (see README)")
            _validate(value[key], sub, f"{prefix}{key}.", source)
        return
    if not schema.ok(value):
        raise SkunetError(
            f"{source}: {prefix.rstrip('.')} = {value!r} must be {schema.describe()}"
        )


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: YAML 1.1, which PyYAML follows, wants a dot
    and a signed exponent, so `lr: 1e-3` would be the string '1e-3' (DVC, reading the same file
    as YAML 1.2, sees the number)."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    # the floats YAML 1.1 misses: an exponent without a dot or without a sign; the others, and
    # every int, resolve as before (resolvers are tried in order, this one last)
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def parse_params(text: str) -> Any:
    """A params file's text (params.yaml, an override) as data, with ParamsLoader."""
    return yaml.load(text, Loader=ParamsLoader)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        params = parse_params(path.read_text())
    except FileNotFoundError:
        raise SkunetError(f"{path}: not found; run from the project folder") from None
    except yaml.YAMLError as err:
        raise SkunetError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    validate(params, source=str(path))
    return params


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise SkunetError(f"unknown dataset '{name}' (allowed: {', '.join(DATASETS)})")
    return name


def check_model(name: str) -> str:
    if name not in MODELS:
        raise SkunetError(f"unknown model '{name}' (allowed: {', '.join(MODELS)})")
    return name


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any], prefix: str = "") -> dict:
    """`base` with `override` laid over it; an override key that `base` lacks is an error."""
    merged = dict(base)
    for key, value in override.items():
        if key not in base:
            raise SkunetError(f"override: unknown key '{prefix}{key}' (not in params.yaml)")
        if isinstance(value, Mapping) and isinstance(base[key], Mapping):
            merged[key] = deep_merge(base[key], value, f"{prefix}{key}.")
        else:
            merged[key] = value
    return merged
