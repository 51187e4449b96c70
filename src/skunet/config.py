"""The project's vocabulary and params.yaml: its schema, loading and validation.

Datasets, models and protocols are named here once; everything else imports them. The schema is
a set of pydantic models: every key is checked before any work starts, so a misspelled key or an
out-of-range value stops a stage with one line naming the key and what is allowed, instead of a
default silently used. The network's settings (:class:`DropBlockSpec`, :class:`SKSpec`,
:class:`ModelConfig`) are part of the same schema, so params.yaml, a checkpoint's recorded
config and a network built by hand are checked by the same rules, with defaults in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_validator

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from skunet.errors import SkunetError, reason

DATASETS = ("drive", "chase")
# The paper's order: each model adds one thing to the one before (Tables 3-4).
MODELS = ("unet", "unet_dropblock", "skunet")
# Which of MODELS have DropBlock after every convolution, and which the SK block.
DROPBLOCK_MODELS = ("unet_dropblock", "skunet")
SK_MODELS = ("skunet",)
PROTOCOLS = ("paper", "fov")
# The paper's training, as it states it (docs/paper.md): 50 epochs on every augmented sample. A run
# labelled `paper` whose checkpoints record less is not called a reproduction.
PAPER_EPOCHS = 50

ModelName = Literal[MODELS]


def _as_tuple(value: Any) -> Any:
    """YAML and JSON give a pair as a list; the settings keep it as a tuple (hashable, frozen)."""
    return tuple(value) if isinstance(value, list) else value


def _odd(value: int) -> int:
    if value % 2 == 0:
        raise ValueError(f"must be odd for 'same' padding, got {value}")
    return value


class Schema(BaseModel):
    """Unknown keys are errors, values keep their YAML type (no "2" for 2), settings never change."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PositiveInt = Annotated[int, Field(ge=1)]
OddInt = Annotated[int, Field(ge=1), AfterValidator(_odd)]
Fraction = Annotated[float, Field(gt=0, lt=1)]  # the open interval (0, 1)
KeepProb = Annotated[float, Field(gt=0, le=1)]  # 1 turns DropBlock off
OddPair = Annotated[tuple[OddInt, OddInt], BeforeValidator(_as_tuple)]
PositivePair = Annotated[tuple[PositiveInt, PositiveInt], BeforeValidator(_as_tuple)]


# ------------------------------------------------------------------------- the network's settings
class DropBlockSpec(Schema):
    """DropBlock after a convolution (Ghiasi et al. 2018; docs/paper.md, "DropBlock")."""

    block_size: PositiveInt = 7  # side of the dropped squares (lost; SA-UNet lineage: 7)
    keep_prob: KeepProb = 0.85  # fraction of units kept (paper: 0.85 DRIVE, 0.80 CHASE_DB1)


class SKSpec(Schema):
    """The selective kernel block's convolutions and attention (docs/paper.md, Eqs. 1-8)."""

    first_kernel: OddInt = 3  # lost; 3x3 per the abstract's "standard convolutions" (SKNet: 1x1)
    kernels: OddPair = (3, 3)  # the two branches (lost; SKNet: 3 and 3)
    dilations: PositivePair = (1, 2)  # SKNet: 3x3 and 3x3 dilated (a 5x5 field)
    reduction: PositiveInt = 16  # r of Eq. 5 (lost; SKNet)
    min_dim: PositiveInt = 32  # L of Eq. 5 (lost; SKNet)


Depth = Annotated[int, Field(ge=1, le=8)]  # levels; 2**(depth - 1) is the input size's multiple


class ModelConfig(Schema):
    """Everything that shapes a network (what `skunet.models.build_model` builds, what a checkpoint
    records). `dropblock` and `sk` default to the values docs/paper.md settles on for the models
    that have them and are refused for the others."""

    name: ModelName
    in_channels: PositiveInt = 3
    base_width: PositiveInt = 16  # channels of the first level, doubling per level (lost; SA-UNet)
    depth: Depth = 4  # 16-32-64-128 (lost; SA-UNet)
    dropblock: DropBlockSpec | None = None
    sk: SKSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_model(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("name") not in MODELS:
            return data  # the field validators name what is wrong
        data = dict(data)
        for key, spec, models in (("dropblock", DropBlockSpec, DROPBLOCK_MODELS), ("sk", SKSpec, SK_MODELS)):
            if data["name"] in models:
                data.setdefault(key, spec())
            elif data.get(key) is not None:
                raise ValueError(f"{data['name']} has no {key}: leave it out")
        return data


# --------------------------------------------------------------------------------- params.yaml
class DownloadParams(Schema):
    sources: list[Any]  # checked where the sources are read (skunet.data.sources)
    help: str


class ResizeParams(Schema):
    # up to 4096: the archives' images are 565-999 px wide; one 4096 px augmented copy alone is 48 MiB
    input_size: Annotated[int, Field(ge=16, le=4096)]


class SplitParams(Schema):
    validation_fraction: Fraction
    mode: Literal["tail", "by_source"]


class SchedulerParams(Schema):
    factor: Fraction
    patience: Annotated[int, Field(ge=0)]
    min_lr: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class TrainCommonParams(Schema):
    epochs: PositiveInt
    scheduler: SchedulerParams
    max_train_samples: Annotated[int, Field(ge=0)]
    fast_path: bool
    compile: bool


class TrainDatasetParams(Schema):
    batch_size: PositiveInt


def _per_dataset(name: str, value: Any, **others: Any) -> type[Schema]:
    """A section with one key per dataset, each holding a `value` (and the `others` fields)."""
    fields = {key: (annotation, ...) for key, annotation in others.items()}
    return create_model(name, __base__=Schema, **fields, **{dataset: (value, ...) for dataset in DATASETS})


TrainParams = _per_dataset("TrainParams", TrainDatasetParams, common=TrainCommonParams)


KeepProbs = _per_dataset("KeepProbs", KeepProb)
DownloadSections = _per_dataset("DownloadSections", DownloadParams)
ResizeSections = _per_dataset("ResizeSections", ResizeParams)


class DropBlockParams(Schema):
    block_size: PositiveInt
    keep_prob: KeepProbs  # type: ignore[valid-type]


class UNetParams(Schema):
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    base_width: PositiveInt
    depth: Depth


class UNetDropBlockParams(UNetParams):
    dropblock: DropBlockParams


def _written_out(spec: type[Schema]) -> type[Schema]:
    """`spec` as a params.yaml section: the same keys and rules with every key required, so that
    no default is taken silently."""
    fields = {name: (Annotated[(info.annotation, *info.metadata)], ...) for name, info in spec.model_fields.items()}
    return create_model(f"{spec.__name__}Params", __base__=Schema, **fields)


class SKUNetParams(UNetDropBlockParams):
    sk: _written_out(SKSpec)  # type: ignore[valid-type]


ModelsParams = create_model(
    "ModelsParams", __base__=Schema,
    **{name: (section, ...) for name, section in zip(MODELS, (UNetParams, UNetDropBlockParams, SKUNetParams))},
)


class EvaluateParams(Schema):
    threshold: Fraction
    curve_points: Annotated[int, Field(ge=2)]


# On the scores' scale, [0, 1]: 1 passes any value (as a test of what a check does beside the
# numbers may want); more is a slip, of a percent for a fraction, say.
Tolerance = Annotated[float, Field(ge=0, le=1)]


class Tolerances(Schema):
    f1: Tolerance
    accuracy: Tolerance
    auc: Tolerance


# A seed below 2**32, as NumPy's and PyTorch's generators (and every tool that passes them on) take.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


class BootstrapParams(Schema):
    n_resamples: Annotated[int, Field(ge=100)]
    seed: Seed
    confidence: Fraction


class CompareParams(Schema):
    tolerances: Tolerances
    bootstrap: BootstrapParams


class BaseParams(Schema):
    seed: Seed
    profile: Literal["paper", "smoke", "tiny"]


class AugmentParams(Schema):
    # each entry's type and arguments are checked where the transforms are built (skunet.data.augment)
    transforms: list[dict[str, Any]]


class Params(Schema):
    base: BaseParams
    download: DownloadSections  # type: ignore[valid-type]
    resize: ResizeSections  # type: ignore[valid-type]
    augment: AugmentParams
    split: SplitParams
    train: TrainParams  # type: ignore[valid-type]
    models: ModelsParams  # type: ignore[valid-type]
    evaluate: EvaluateParams
    compare: CompareParams


def model_config(params: Mapping[str, Any], dataset: str, model: str) -> ModelConfig:
    """The network `model` is trained as on `dataset`, from validated params: its section of
    `models`, with DropBlock's keep rate for `dataset`."""
    section = dict(params["models"][model])
    section.pop("lr")
    if "dropblock" in section:
        drop = section["dropblock"]
        section["dropblock"] = {"block_size": drop["block_size"], "keep_prob": drop["keep_prob"][dataset]}
    return ModelConfig.model_validate({"name": model, **section})


# ----------------------------------------------------------------------------------- validating
def validate(params: Mapping[str, Any], source: str = "params.yaml") -> None:
    """Raise SkunetError naming the first key that is missing, unknown or out of range."""
    try:
        Params.model_validate(params)
    except ValidationError as err:
        whole = any(not e["loc"] for e in err.errors())
        raise SkunetError(f"{source}: {describe(err, Params)}"
                          + ("; restore it (`git checkout params.yaml`)" if whole else "")) from None


def describe(err: ValidationError, schema: type[BaseModel]) -> str:
    """The first problem of `err` in one line: the dotted key, the value and what is allowed."""
    # an unknown key first: a misspelled key is also reported missing under its right name
    first = min(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(_fields_at(schema, loc[:-1]))
        return f"unknown key '{key}' (allowed here: {allowed}); fix the spelling"
    if first["type"] == "missing":
        return f"missing key '{key}'; add it (see README)"
    if not key:  # the whole file: empty, or a list or a value instead of sections
        kind = type(first["input"]).__name__
        what = "empty" if first["input"] is None else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
        return f"{what}, where a mapping of sections ({', '.join(schema.model_fields)}) belongs"
    message = first["msg"].removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    return f"{key} = {first['input']!r}: {message}"


def _fields_at(schema: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys allowed at `loc` inside `schema`."""
    for part in loc:
        annotation = schema.model_fields[part].annotation
        # a section that may be absent (ModelConfig's specs) is `Spec | None`
        schema = next((a for a in getattr(annotation, "__args__", ()) if isinstance(a, type)), annotation)
    return list(schema.model_fields)


def parse_yaml(text: str) -> Any:
    """YAML text as data, read the way DVC reads params.yaml (ruamel.yaml, YAML 1.2), so that a
    stage sees the value DVC hashed into its run-cache key: `042` is 42 (not YAML 1.1's octal
    34), `1e-3` is a number, `yes` is a string, and a key given twice is an error."""
    return YAML(typ="safe").load(text)


def yaml_problem(err: Exception) -> str:
    """A YAML parser's error in a few words: where it is and what it is, with no source excerpt."""
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(err, "problem", None) or reason(err)
    return f"{where}{problem.split(chr(10))[0]}"


def read_yaml(path: Path, missing: str = "not found") -> Any:
    """The YAML file at `path` (:func:`parse_yaml`); absent or malformed: one line naming the file,
    and for malformed YAML the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SkunetError(f"{path}: {missing}") from None
    try:
        return parse_yaml(text)
    except YAMLError as err:
        raise SkunetError(f"{path}: not valid YAML ({yaml_problem(err)}); fix it there") from None


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read and validate params.yaml."""
    path = Path(path)
    params = read_yaml(path, missing="not found; run from the project folder")
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


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any], prefix: str = "",
               source: str = "override") -> dict:
    """`base` with `override` (read from `source`) laid over it; an override key that `base`
    lacks is an error naming `source`."""
    if not isinstance(override, Mapping):
        raise SkunetError(f"{source}: expected a mapping of params.yaml's keys to new values, got"
                          f" {type(override).__name__}; fix it there")
    merged = dict(base)
    for key, value in override.items():
        if key not in base:
            raise SkunetError(f"{source}: unknown key '{prefix}{key}' (not in params.yaml); fix the spelling there")
        if isinstance(value, Mapping) and isinstance(base[key], Mapping):
            merged[key] = deep_merge(base[key], value, f"{prefix}{key}.", source)
        else:
            merged[key] = value
    return merged


def pipeline_folder(path: Path) -> tuple[Path, str] | None:
    """Where `path` lies inside what a pipeline reads or writes: ``(root, top)`` for the nearest
    folder `root` above it that holds a dvc.yaml, where `top` (``plots``, ``metrics``, ``src``,
    ...) is the first part of a path one of its stages reads or writes; None elsewhere. Files
    written there would be counted as the pipeline's inputs, or deleted with its outputs."""
    path = Path(path).resolve()
    for root in path.parents:
        if (root / "dvc.yaml").is_file():
            top = path.relative_to(root).parts[0]
            return (root, top) if top in _pipeline_tops(root / "dvc.yaml") else None
    return None


def _pipeline_tops(dvc_yaml: Path) -> set[str]:
    """The first parts of the paths the stages of `dvc_yaml` read or write; none where it is not a
    pipeline DVC could run (unreadable, not UTF-8, not YAML, not a mapping of stages)."""
    try:
        stages = parse_yaml(dvc_yaml.read_text(encoding="utf-8")).get("stages") or {}
        entries = [entry for stage in stages.values() for key in ("deps", "outs", "metrics", "plots")
                   for entry in ((stage or {}).get(key) or [])]
    except (OSError, ValueError, YAMLError, AttributeError, TypeError):  # ValueError: also not UTF-8
        return set()
    names = [name for entry in entries for name in (entry if isinstance(entry, dict) else [entry])]
    return {Path(str(name)).parts[0] for name in names if Path(str(name)).parts}  # "" names nothing

