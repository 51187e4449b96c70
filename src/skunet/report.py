"""Reports: the comparison as Markdown, the README's results section, and figures (matplotlib Agg).

Every table here is generated from the compare stage's results, as ``reports/results.json`` keeps
them: ``{"run": context, "protocols": {protocol: skunet.compare.compare result}, "human":
{dataset: {protocol: scores}}, "audit": skunet.audit.audit_reference result, "missing":
skunet.compare.missing_models result}`` (the last three optional); nothing is typed by hand. Files are written to a temporary name in the
target folder and moved into place, so an interrupted run never leaves half a report.

The ``run`` context says where the numbers come from; keys, all optional: ``run`` (a run or
experiment name, a git revision), ``profile`` (``paper``, ``smoke``, ...), ``device`` (e.g.
"NVIDIA H100"), ``torch`` (its version), ``augmented_with`` (the library versions that drew the
augmentations), ``training_time`` (e.g. "12 min 5 s for 6 trainings") and ``date``.
:func:`skunet.checkpoints.run_context` gives the first five.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from skunet.atomic import atomic_file  # noqa: E402
from skunet.audit import format_audit_table, format_implied_table  # noqa: E402
from skunet.compare import format_table, percent, result_rows  # noqa: E402
from skunet.config import PAPER_EPOCHS, PROTOCOLS  # noqa: E402
from skunet.errors import SkunetError, reason  # noqa: E402

# The compare stage's results in full ({"run": context, "protocols": {protocol: result}}), read by
# `skunet readme`; metrics/compare.json is derived from them for `dvc metrics diff`.
RESULTS_JSON = Path("reports") / "results.json"
RESULTS_KEYS = ("protocols", "run", "human", "audit", "missing")
COMPARE_JSON = Path("metrics") / "compare.json"
AUDIT_JSON = Path("metrics") / "audit.json"
HUMAN = "2nd observer"
HUMAN_METRICS = ("f1", "accuracy", "sensitivity", "specificity")

PROTOCOL_TITLES = {
    "paper": "Protocol `paper` (whole image, no FOV mask: the protocol the published numbers fit)",
    "fov": "Protocol `fov` (pixels inside the field-of-view mask only; for context)",
}
# Error map colours (RGB in [0, 1]); the legend of plot_qualitative names them.
ERROR_COLOURS = {
    "true positive": (1.0, 1.0, 1.0),
    "false positive": (0.9, 0.1, 0.1),
    "false negative": (0.1, 0.35, 1.0),
    "true negative": (0.0, 0.0, 0.0),
    "outside FOV, no error": (0.3, 0.3, 0.3),
}


# ---------------------------------------------------------------------------------------------
# Writing files atomically


def _write_text(path: Path | str, text: str) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _save_figure(fig: plt.Figure, path: Path | str, dpi: int = 120) -> Path:
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            # the temporary name has no image suffix: name the format
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Markdown


def _provenance(context: Mapping[str, Any]) -> list[str]:
    run = context.get("run", "unknown")
    profile = context.get("profile", "unknown")
    device = context.get("device", "unknown device")
    line = f"Metrics from run `{run}`, profile `{profile}`, on {device}"
    if context.get("torch"):
        line += f", torch {context['torch']}"
    if context.get("date"):
        line += f", {context['date']}"
    if context.get("augmented_with"):
        line += f"; augmentations drawn with {context['augmented_with']}"
    if context.get("training_time"):
        line += f"; training took {context['training_time']}"
    lines = [line + "."]
    paper = f"the paper's full training ({PAPER_EPOCHS} epochs, all augmentations)"
    if profile != "paper":
        lines += [
            "",
            f"**No paper-profile run exists yet.** These numbers come from the `{profile}` "
            f"profile, not {paper}, so they test the pipeline and are not a reproduction of the published tables.",
        ]
    elif context.get("short_of_paper"):
        lines += [
            "",
            f"**Not the paper's training.** The run is labelled `paper`, but its checkpoints record "
            f"{context['short_of_paper']}, not {paper}, so these numbers are not a reproduction of the published tables.",
        ]
    return lines


def _partial_run(full: Mapping[str, Any]) -> list[str]:
    """A partial run says which models have no results yet and why (the compare stage's
    ``missing``: :func:`skunet.compare.missing_models`)."""
    missing = full.get("missing") or []
    if not missing:
        return []
    results = full["protocols"].get("paper") or next(iter(full["protocols"].values()))
    total = len({(r["dataset"], r["model"]) for r in result_rows(results)})
    names = "; ".join(f"{m['dataset']}/{m['model']} ({m['why']})" for m in missing)
    return [f"**A partial run:** {len(missing)} of the {total} published models have no results yet, so their "
            f"cells read `missing`: {names}.", ""]


def _figure_links(figures: Any, base: Path) -> list[str]:
    if not figures:
        return []
    if isinstance(figures, Mapping):
        items = list(figures.items())
    else:
        items = [(Path(f).stem, f) for f in figures]
    lines = []
    for caption, target in items:
        rel = Path(os.path.relpath(Path(target), base)).as_posix()
        image = Path(target).suffix.lower() in (".png", ".svg", ".jpg", ".jpeg")
        lines.append(f"![{caption}]({rel})" if image else f"- [{caption}]({rel})")
    return lines


def _tables(full: Mapping[str, Any], level: str) -> list[str]:
    """Per protocol (PROTOCOLS order): the comparison, the second observer's scores and the
    differences between models."""
    lines: list[str] = []
    results, human = full["protocols"], full.get("human") or {}
    for protocol in (p for p in PROTOCOLS if p in results):
        lines += [f"{level} {PROTOCOL_TITLES[protocol]}", ""]
        lines += [format_table(results[protocol]).rstrip("\n"), ""]
        lines += _human_table(human, protocol) + _differences_table(results[protocol])
    return lines


def _human_table(human: Mapping[str, Any], protocol: str) -> list[str]:
    """The human reference: the second observer's tracing scored against the first."""
    if not human:
        return []
    lines = [f"Human reference: the {HUMAN}'s tracing scored against the first observer's, pooled over "
             "the same test images (a binary map: no AUC).", "",
             "| dataset | reference | " + " | ".join(HUMAN_METRICS) + " |",
             "|---|---|" + "---:|" * len(HUMAN_METRICS)]
    for dataset, by_protocol in human.items():
        scores = by_protocol[protocol]
        lines.append(f"| {dataset} | {HUMAN} | " + " | ".join(f"{scores[m]:.4f}" for m in HUMAN_METRICS) + " |")
    return lines + [""]


def _differences_table(result: Mapping[str, Any]) -> list[str]:
    """Each model against the one before it in the paper's ranking, from the paired bootstrap."""
    rows = [(dataset, d) for dataset, block in result["datasets"].items() for d in block.get("differences", [])]
    if not rows:
        return []
    level = f"{percent(result['bootstrap']['confidence'])}"
    lines = [f"Differences between models (paired over the same resampled test images; supported: the "
             f"{level} interval excludes 0):", "",
             f"| dataset | difference | metric | value | {level} interval | p | supported |",
             "|---|---|---|---:|---:|---:|---|"]
    # p is 0 when no resample crosses 0: all it says then is p < 2 / resamples
    floor = 2 / result["bootstrap"]["n_resamples"]
    for dataset, d in rows:
        p = f"< {floor:.2g}" if d["p_value"] < floor else f"{d['p_value']:.3f}"
        lines.append(f"| {dataset} | {d['a']} - {d['b']} | {d['metric']} | {d['value']:+.4f} | "
                     f"[{d['low']:+.4f}, {d['high']:+.4f}] | {p} | {'yes' if d['supported'] else 'no'} |")
    return lines + [""]


def _audit_section(audit: Mapping[str, Any] | None, level: str) -> list[str]:
    """The audit of the published numbers, the scores they imply, and the self-audit of ours."""
    if not audit:
        return []
    lines = [f"{level} Audit: could the published numbers come from these test sets?", "",
             "Each published row (Tables 3-6) tested with mlscorecheck for consistency with each "
             "evaluation it can test: an inconsistent verdict proves the row was not computed that "
             "way; a consistent one says it could have been.", "",
             format_audit_table(audit).rstrip("\n"), ""]
    if audit.get("implied"):
        lines += ["Sensitivity, specificity and precision implied by the published accuracy and F1, "
                  "for the paper's rows consistent with pooled whole-image scoring (interval: the "
                  "rounding of the published digits), beside ours (protocol `paper`):", "",
                  format_implied_table(audit["implied"]).rstrip("\n"), ""]
    for line in audit.get("test_sets", []):
        lines += [line, ""]
    if audit.get("self_audit"):
        lines += [f"Self-audit: our metrics passed the same test under the protocol they claim, their "
                  f"counts adding up to the test set's vessel and background pixels "
                  f"({len(audit['self_audit'])} files x protocols: {', '.join(audit['self_audit'])}).", ""]
    return lines


def format_duration(seconds: float) -> str:
    """A duration as people say it: 9.4 s, 4 min 12 s, 1 h 03 min (rounded to the unit shown)."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    if round(seconds) < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def _training_table(training: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's training section: epochs, the checkpointed epoch, and time per training."""
    lines = [
        "## Training",
        "",
        "Each checkpoint is the epoch with the lowest validation loss. Time: the epochs' times "
        "summed from `plots/train/<dataset>/<model>.csv` (loading the data and building the "
        "model are not counted).",
        "",
        "| dataset | model | epochs | best epoch | val loss | val F1 | training time | per epoch "
        "| device |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in training:
        f1 = "" if row.get("best_val_f1") is None else f"{row['best_val_f1']:.4f}"
        timed = row.get("seconds") is not None and row["epochs"] > 0
        took = format_duration(row["seconds"]) if timed else "no log"
        per_epoch = format_duration(row["seconds"] / row["epochs"]) if timed else ""
        lines.append(
            f"| {row['dataset']} | {row['model']} | {row['epochs']} | {row['best_epoch']} | "
            f"{row['best_val_loss']:.4f} | {f1} | {took} | {per_epoch} | {row['device']} |"
        )
    lines += ["", f"{training_time(training)}.", ""]
    return lines


def training_time(training: Sequence[Mapping[str, Any]]) -> str:
    """The trainings' time in all, saying how many of them it covers: "12 min 5 s for 6
    trainings", or "... for 5 of 6 trainings (1 without a log)"."""
    timed = [row["seconds"] for row in training if row.get("seconds") is not None]
    text = f"{format_duration(sum(timed))} for "
    if len(timed) == len(training):
        return text + f"{len(training)} training{'' if len(training) == 1 else 's'}"
    missing = len(training) - len(timed)
    return text + f"{len(timed)} of {len(training)} trainings ({missing} without a log)"


def write_markdown_report(
    full: Mapping[str, Any],
    path: Path | str,
    figures: Any = None,
    training: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write the comparison report: provenance, per protocol the comparison with intervals, the
    human reference and the differences between models, the audit, the trainings (rows as
    :func:`skunet.checkpoints.training_summaries` gives them) and the figures.

    `full` is the compare stage's results (module docstring). Figure links (``{caption: path}``)
    are relative to the report's folder.
    """
    path = Path(path)
    lines = ["# SKU-Net reproduction: results against the paper", ""]
    lines += _provenance(full.get("run") or {}) + [""]
    lines += _partial_run(full)
    lines += [
        "Published values: Hwang, Moon, Kim (2021), Tables 3 (DRIVE) and 4 (CHASE_DB1), "
        "doi:10.9708/jksci.2021.26.04.029.",
        "",
    ]
    lines += _tables(full, "##")
    lines += _audit_section(full.get("audit"), "##")
    if training:
        lines += _training_table(training)
    links = _figure_links(figures, path.parent)
    if links:
        lines += ["## Figures", ""] + links + [""]
    return _write_text(path, "\n".join(lines))


def readme_results_section(full: Mapping[str, Any], source: str = RESULTS_JSON.as_posix()) -> str:
    """Markdown for the README's results section, from the compare stage's results.

    The section names the run, profile and device the numbers come from, and says plainly when no
    paper-profile run exists yet.
    """
    lines = [
        "## Results",
        "",
        f"<!-- generated from {source} by skunet.report.readme_results_section; do not edit -->",
        "",
    ]
    lines += _provenance(full.get("run") or {}) + [""]
    if not any(result_rows(r) for r in full["protocols"].values()):
        lines += ["No metrics yet: run `dvc repro` to train and evaluate the models.", ""]
        return "\n".join(lines + _audit_section(full.get("audit"), "###"))
    lines += _partial_run(full)
    lines += [
        "Reproduced vs published (Tables 3 and 4 of the paper); delta = reproduced - published.",
        "",
    ]
    lines += _tables(full, "###")
    lines += _audit_section(full.get("audit"), "###")
    return "\n".join(lines)


def read_results(root: Path | str) -> dict[str, Any]:
    """``root/reports/results.json``, as the compare stage wrote it: ``{"run": context,
    "protocols": {protocol: result}}``. Raises SkunetError when it is missing or unreadable."""
    path = Path(root) / RESULTS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SkunetError(f"{path} not found: run `dvc repro` (or `skunet smoke`) first") from None
    except (OSError, ValueError) as err:
        raise SkunetError(f"{path}: not readable as JSON ({err}); run `dvc repro -f -s compare`") from None
    absent = [key for key in RESULTS_KEYS if key not in data] if isinstance(data, dict) else ["protocols"]
    if absent or not isinstance(data["protocols"], dict):
        raise SkunetError(f"{path}: not the compare stage's results (no '{(absent or ['protocols'])[0]}'); run"
                          " `dvc repro -f -s compare`")
    return data


def damaged_results(path: Path | str, err: Exception) -> SkunetError:
    """The error for a results.json whose layout is not the compare stage's (edited by hand, or
    written by another version), found while it is read."""
    return SkunetError(f"{path}: not as the compare stage writes it ({type(err).__name__}: {reason(err)});"
                       " run `dvc repro -f -s compare`")


# ---------------------------------------------------------------------------------------------
# Figures


def plot_bars(result: Mapping[str, Any], path: Path | str, human: Mapping[str, Any] | None = None) -> Path:
    """Reproduced vs published bars, one subplot per dataset, grouped by model x metric.

    `result` is one :func:`skunet.compare.compare` result (the compare stage draws the ``paper``
    protocol's). The published bars carry the tolerance as an error bar, the reproduced ones their
    bootstrap interval where there is one. With `human` (``{dataset: {protocol: scores}}``) the
    second observer's F1 and accuracy close each subplot as hatched bars: the human reference.
    """
    rows = result_rows(result)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows)) or ["(no data)"]
    protocol = result["protocol"]
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(6.5 * len(datasets), 4.2), squeeze=False, sharey=True
    )
    values = [v for r in rows for v in (r["reproduced"], r["published"]) if v is not None]
    values += [s[protocol][m] for s in (human or {}).values() for m in ("f1", "accuracy")]
    low = max(0.0, min(values) - 0.05) if values else 0.0
    for ax, dataset in zip(axes[0], datasets):
        cells = [r for r in rows if r["dataset"] == dataset]
        x = np.arange(len(cells))
        rep = np.array([np.nan if r["reproduced"] is None else r["reproduced"] for r in cells])
        pub = [np.nan if r["published"] is None else r["published"] for r in cells]
        tol = [0.0 if r["tolerance"] is None else r["tolerance"] for r in cells]
        bounds = np.array([r.get("interval") or [v, v] for r, v in zip(cells, rep)], dtype=float).reshape(-1, 2)
        spread = np.clip(np.stack([rep - bounds[:, 0], bounds[:, 1] - rep]), 0, None)
        ax.bar(x - 0.2, pub, 0.4, yerr=tol, capsize=2, color="0.65")
        colours = ["tab:red" if r["pass"] is False else "tab:blue" for r in cells]
        ax.bar(x + 0.2, rep, 0.4, yerr=np.nan_to_num(spread), capsize=2, color=colours)
        for xi, r in zip(x, cells):
            if r["missing"] == "reproduced":
                ax.text(xi + 0.2, low, " not run", rotation=90, ha="center", va="bottom", size=7)
        ticks = [f"{r['model']}\n{r['metric']}" for r in cells]
        if human and dataset in human:
            scores = human[dataset][protocol]
            hx = np.arange(len(cells), len(cells) + 2)
            ax.bar(hx, [scores["f1"], scores["accuracy"]], 0.4, color="white", edgecolor="tab:green", hatch="//")
            x, ticks = np.concatenate([x, hx]), ticks + [f"{HUMAN}\nf1", f"{HUMAN}\naccuracy"]
        ax.set_xticks(x, ticks, fontsize=7, rotation=45)
        ax.set_title(dataset)
        ax.set_ylim(low, 1.01)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("score")
    level = f"{percent(result['bootstrap']['confidence'])} " if result.get("bootstrap") else ""
    handles = [
        Patch(color="0.65", label="published (error bar: tolerance)"),
        Patch(color="tab:blue", label=f"reproduced, within tolerance (error bar: {level}interval)"),
        Patch(color="tab:red", label="reproduced, outside tolerance"),
    ]
    if human:
        handles.append(Patch(facecolor="white", edgecolor="tab:green", hatch="//",
                             label=f"{HUMAN} against the first (human reference)"))
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=2)
    fig.suptitle(f"reproduced (protocol {protocol}) vs published")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return _save_figure(fig, path)


def plot_differences(result: Mapping[str, Any], path: Path | str) -> Path:
    """A forest plot of the differences between models (each against the one before it in the
    paper's ranking), per dataset (rows) and metric (columns): the point and its bootstrap
    interval; an interval clear of 0 (dashed) supports the difference."""
    datasets = [d for d, block in result["datasets"].items() if block.get("differences")] or ["(no pairs yet)"]
    metrics = list(dict.fromkeys(d["metric"] for block in result["datasets"].values()
                                 for d in block.get("differences", []))) or ["f1"]
    fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(3.6 * len(metrics), 0.6 + 1.4 * len(datasets)),
                             squeeze=False)
    for row, dataset in zip(axes, datasets):
        diffs = result["datasets"].get(dataset, {}).get("differences", [])
        for ax, metric in zip(row, metrics):
            shown = [d for d in diffs if d["metric"] == metric]
            for y, d in enumerate(shown):
                colour = "tab:blue" if d["supported"] else "0.5"
                ax.errorbar(d["value"], y, xerr=[[d["value"] - d["low"]], [d["high"] - d["value"]]],
                            fmt="o", color=colour, capsize=3)
            ax.axvline(0, color="0.3", linestyle="--", linewidth=1)
            ax.set_yticks(range(len(shown)), [f"{d['a']} - {d['b']}" for d in shown], fontsize=7)
            ax.set_ylim(-0.7, max(len(shown), 1) - 0.3)
            ax.set_title(f"{dataset}: {metric}", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    level = f"{percent(result['bootstrap']['confidence'])}" if result.get("bootstrap") else ""
    fig.suptitle(f"differences between models, protocol {result['protocol']} ({level} paired bootstrap "
                 "interval; blue: clear of 0)", fontsize=9)
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_training_curves(training: Sequence[Mapping[str, Any]], path: Path | str) -> Path:
    """Training curves, one row per dataset: train (solid) and validation (dashed) loss, and
    validation F1, per epoch; a dot marks each model's checkpointed epoch.

    `training` holds rows as :func:`skunet.checkpoints.training_summaries` gives them (``log``:
    the per-epoch rows).
    """
    datasets = list(dict.fromkeys(row["dataset"] for row in training)) or ["(no trainings yet)"]
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.6 * len(datasets)), squeeze=False)
    colours = dict(zip(dict.fromkeys(row["model"] for row in training), plt.cm.tab10.colors))
    if not training:
        axes[0][0].text(0.5, 0.5, "no trainings yet", ha="center", va="center", color="0.4")
    for (ax_loss, ax_f1), dataset in zip(axes, datasets):
        for row in (r for r in training if r["dataset"] == dataset and r["log"]):
            epoch = [r["epoch"] for r in row["log"]]
            colour = colours[row["model"]]
            ax_loss.plot(epoch, [r["train_loss"] for r in row["log"]], color=colour,
                         label=row["model"])
            ax_loss.plot(epoch, [r["val_loss"] for r in row["log"]], color=colour, linestyle="--")
            ax_f1.plot(epoch, [r["val_f1"] for r in row["log"]], color=colour, label=row["model"])
            if row["best_val_f1"] is not None:  # the checkpointed epoch is in the log
                best = dict(color=colour, marker="o", markersize=4)
                ax_loss.plot(row["best_epoch"], row["best_val_loss"], **best)
                ax_f1.plot(row["best_epoch"], row["best_val_f1"], **best)
        ax_loss.set_title(f"{dataset}: BCE loss (solid: train, dashed: validation)")
        ax_f1.set_title(f"{dataset}: validation F1 (dot: checkpointed epoch)")
        for ax in (ax_loss, ax_f1):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_roc(
    curves: Mapping[str, Mapping[str, Sequence[float]]], dataset: str, path: Path | str
) -> Path:
    """The models' ROC curves on one dataset.

    `curves` maps a model name to ``{"fpr": [...], "tpr": [...]}`` (as
    :func:`skunet.metrics.roc_curve_points` returns) and optionally ``"auc"``: the exact AUC,
    shown in the legend. Without it the legend shows the trapezoidal area under the given
    (thinned) points, marked with "~".
    """
    fig, ax = plt.subplots(figsize=(5, 5))
    if not curves:
        ax.text(0.5, 0.5, "no predictions yet", ha="center", va="center", color="0.4")
    for model, curve in curves.items():
        fpr = np.asarray(curve["fpr"], dtype=float)
        tpr = np.asarray(curve["tpr"], dtype=float)
        if curve.get("auc") is not None:
            label = f"{model} (AUC {float(curve['auc']):.4f})"
        else:
            area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
            label = f"{model} (AUC ~{area:.4f})"
        ax.plot(fpr, tpr, label=label, linewidth=1.5)
    ax.plot([0, 1], [0, 1], linestyle=":", color="0.6", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC, {dataset}")
    if curves:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def error_map(
    prob: np.ndarray, label: np.ndarray, fov: np.ndarray | None = None, threshold: float = 0.5
) -> np.ndarray:
    """An RGB image (float, H x W x 3) of the prediction's errors, colours as ERROR_COLOURS.

    TP white, FP red, FN blue, TN black. With `fov`, correct background outside the FOV is dark
    grey; errors outside the FOV keep their colour, since the ``paper`` protocol counts them.
    """
    pred = np.asarray(prob) > threshold
    truth = np.asarray(label).astype(bool)
    rgb = np.zeros(pred.shape + (3,), dtype=float)
    rgb[pred & truth] = ERROR_COLOURS["true positive"]
    rgb[pred & ~truth] = ERROR_COLOURS["false positive"]
    rgb[~pred & truth] = ERROR_COLOURS["false negative"]
    if fov is not None:
        rgb[~np.asarray(fov).astype(bool) & ~pred & ~truth] = ERROR_COLOURS["outside FOV, no error"]
    return rgb


def plot_qualitative(
    image_rgb: np.ndarray,
    predictions: np.ndarray | Sequence[tuple[str, np.ndarray]],
    label: np.ndarray,
    fov: np.ndarray | None,
    path: Path | str,
    title: str,
    threshold: float = 0.5,
) -> Path:
    """A figure like the paper's Fig. 5/6, with error maps.

    First row: the image, the ground truth, the FOV mask. One row per model: the probability map,
    the thresholded prediction (probability > `threshold`), and the error map (TP white, FP red,
    FN blue, TN black, outside the FOV grey; the legend says so). `predictions` is a list of
    ``(model_name, probability)`` or a single probability array.
    """
    if isinstance(predictions, np.ndarray):
        predictions = [("prediction", predictions)]
    n_rows = 1 + len(predictions)
    # 4 inches a panel at 150 dpi: 600 pixels, about native DRIVE resolution, so thin vessels show
    fig, axes = plt.subplots(n_rows, 3, figsize=(12, 4 * n_rows), squeeze=False)
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 and image.size and image.max() > 1.0:
        image = np.clip(image / 255.0, 0.0, 1.0)
    cmap = "gray" if image.ndim == 2 else None
    panels = [(image, "image", cmap), (np.asarray(label).astype(float), "ground truth", "gray")]
    if fov is not None:
        panels.append((np.asarray(fov).astype(float), "FOV mask", "gray"))
    for ax, (data, name, cm) in zip(axes[0], panels):
        ax.imshow(data, cmap=cm, vmin=0 if cm else None, vmax=1 if cm else None)
        ax.set_title(name, fontsize=9)
    for (model, prob), row in zip(predictions, axes[1:]):
        prob = np.asarray(prob, dtype=float)
        row[0].imshow(prob, cmap="gray", vmin=0, vmax=1)
        row[0].set_title(f"{model}: probability", fontsize=9)
        row[1].imshow(prob > threshold, cmap="gray", vmin=0, vmax=1)
        row[1].set_title(f"{model}: prediction (> {threshold:g})", fontsize=9)
        row[2].imshow(error_map(prob, label, fov, threshold))
        row[2].set_title(f"{model}: errors", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    shown = [k for k in ERROR_COLOURS if fov is not None or not k.startswith("outside")]
    fig.legend(
        handles=[Patch(facecolor=ERROR_COLOURS[k], edgecolor="0.5", label=k) for k in shown],
        loc="lower center",
        ncol=len(shown),
        fontsize=8,
    )
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return _save_figure(fig, path, dpi=150)
