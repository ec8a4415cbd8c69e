"""The measured runs committed under results/: read, grouped by setting, and summarised with
their data, n and spread. The README's tables (scripts/results_tables.py) and the notebook's
title and conclusions are made from them, so that no number is typed twice."""
from __future__ import annotations

import glob
import json
import os
import statistics
from typing import Dict, List, Optional

from .evaluation import accuracy_interval, interval_text

RESULTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
# A run's settings that do not change what it computes: runs differing only in them (and the
# seed) form one row.
INCIDENTAL = ("seed", "output_dir", "figures_dir", "test_each_epoch", "progress")


def load_runs(results_dir: str = RESULTS_DIR, evaluations: bool = False) -> List[dict]:
    """Training runs, or (evaluations=True) the runs that evaluated given weights instead;
    each metrics.json with its folder's name added as "folder"."""
    runs = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*", "metrics.json"))):
        with open(path) as file:
            metrics = json.load(file)
        metrics["folder"] = os.path.basename(os.path.dirname(path))
        if ("evaluated_weights" in metrics) == evaluations:
            runs.append(metrics)
    return runs


def recorded_run(weights: str) -> Optional[dict]:
    """The metrics.json of the training run that wrote `weights` (it lies beside them), if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        metrics = json.load(file)
    return None if "evaluated_weights" in metrics else metrics


def group_key(run: dict) -> tuple:
    config = {k: v for k, v in run["config"].items() if k not in INCIDENTAL}
    return json.dumps(config, sort_keys=True), run["device"], run["commit"]


def grouped(runs: List[dict]) -> List[List[dict]]:
    """Runs of one setting together (by seed), GPU before CPU, reference first, as shipped
    before its variants."""
    groups: Dict[tuple, List[dict]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)

    def order(group: List[dict]) -> tuple:
        run = group[0]
        return (run["device"] == "cpu", run["recipe"] != "reference",
                bool(run["config"].get("recipe_overrides")), run["val_images"])

    for group in groups.values():
        group.sort(key=lambda r: r["seed"])
    return sorted(groups.values(), key=order)


def is_full_length(run: dict) -> bool:
    """A 75-epoch-style run on all 50,000 training images on a GPU: what the summary shows."""
    return run["device"] != "cpu" and not run["val_images"] and run["train_images"] == 50_000


def recipe_label(run: dict) -> str:
    overrides = run["config"].get("recipe_overrides")
    label = f"{run['recipe']}, {run['epochs']} epochs, batch {run['batch_size']}"
    return label + (f", `recipe_overrides={overrides}`" if overrides else "")


def hardware(run: dict) -> str:
    """What a run ran on: "NVIDIA H200", or "cpu"."""
    return run["device"].replace("cuda: ", "")


def accuracy_summary(group: List[dict], bold: bool = False) -> str:
    """One run: "89.45 % (95 % interval 88.8–90.0 %, n = 10,000)". Several seeds: their mean ±
    sample standard deviation, each value, and the interval of one run's n at the mean."""
    values = [r["test_accuracy"] for r in group]
    images = group[0]["test_images"]
    if len(values) == 1:
        headline = f"{values[0]:.2f} %"
        return f"{'**' + headline + '**' if bold else headline} (95 % interval {interval_text(values[0], images)})"
    mean = statistics.mean(values)
    low, high = accuracy_interval(mean, images)
    headline = f"{mean:.2f} ± {statistics.stdev(values):.2f} %"
    return (f"{'**' + headline + '**' if bold else headline} ({', '.join(f'{v:.2f}' for v in values)}: "
            f"mean ± sample std of {len(values)} seeds; n = {images:,} each, 95 % interval of one "
            f"run ±{(high - low) / 2:.1f})")


def measured_lines(runs: List[dict], evaluations: List[dict]) -> List[str]:
    """Markdown bullets of what was measured: the full-length training runs by setting, then the
    evaluations of committed weights, each with its data, n and interval."""
    lines = [f"- {recipe_label(group[0])}, trained on {group[0]['data']['train']['name']}, tested "
             f"on {group[0]['data']['test']['name']}: {accuracy_summary(group, bold=True)}"
             for group in grouped(runs) if is_full_length(group[0])]
    by_weights: Dict[tuple, List[dict]] = {}
    for run in evaluations:
        by_weights.setdefault(tuple(run["evaluated_weights"]), []).append(run)
    for paths, evaluated in by_weights.items():
        named = [f"`{path}`" for path in paths]
        weights = f"ensemble of {' and '.join(named)}" if len(named) > 1 else named[0]
        # The official images first: they are what the report measured on.
        evaluated = sorted(evaluated, key=lambda r: "official" not in r["data"]["test"]["name"])
        lines.append(f"- {weights}, evaluated on " + "; on ".join(
            f"{r['data']['test']['name']}: {accuracy_summary([r], bold=i == 0)}"
            for i, r in enumerate(evaluated)))
    if not any("official" in run["data"].get("train", {}).get("name", "") for run in runs):
        lines.append("- Not yet measured: a network trained on the official images, the report's "
                     "data (it needs a GPU).")
    return lines
