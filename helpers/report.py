"""The report: metrics.json, the closing summary, the prose that says what a run did, and the
measured runs committed under results/ (the README's tables, scripts/results_tables.py, and
the notebook's conclusions are made from them, so that no number is typed twice). Every
function takes plain values.
"""
from __future__ import annotations

import glob
import json
import os
import platform
import statistics
import subprocess
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision

from .data import SYNTHETIC, subset_rule
from .env import cpu_record
from .evaluation import (accuracy_interval, format_accuracy, format_per_class, interval_text,
                         per_class_scores)
from .files import run_record
from .model import REFERENCE_PARAMETER_COUNT, NetworkShape
from .training import cpu_computes_bf16

class MarkdownText(str):
    """Text in Markdown that a notebook renders and a log shows as it is: IPython's Markdown
    object would print as "<IPython.core.display.Markdown object>" in papermill's log."""

    _repr_markdown_ = __repr__ = str.__str__


REFERENCE_TEST_ACCURACY = 93.41  # percent, the Spring 2025 report, official CIFAR-10 test set
SYNTHETIC_WARNING = "SYNTHETIC DATA: these numbers say nothing about CIFAR-10"


def device_name(device: torch.device) -> str:
    """'cuda: NVIDIA H100 80GB HBM3' or 'cpu'."""
    return f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"


COMMIT_VARIABLE = "CIFAR10_RESNET_COMMIT"  # the commit, where the code travels without .git


def git_commit(folder: str = os.path.dirname(os.path.abspath(__file__))) -> Optional[str]:
    """The commit of the code that ran, with '+dirty' when files were changed; None where it
    cannot be known (commit_and_reason says why)."""
    return commit_and_reason(folder)[0]


def commit_and_reason(folder: str = os.path.dirname(os.path.abspath(__file__))
                      ) -> Tuple[Optional[str], Optional[str]]:
    """(commit, note): the note says why git could not tell the commit (None where it could)."""
    try:
        asked = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                               text=True, timeout=10)
        if asked.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=folder, capture_output=True, text=True, timeout=10)
            return asked.stdout.strip() + ("+dirty" if dirty.stdout.strip() else ""), None
        said = (asked.stderr.strip().splitlines() or ["no message"])[0]
        if "not a git repository" in said:
            why = "this copy of the code has no .git folder"
        elif "dubious ownership" in said:
            why = ("git refuses the repository because another user owns it (git config "
                   "--global --add safe.directory REPO allows it)")
        else:
            why = f"git answered: {said}"
    except FileNotFoundError:
        why = "git is not installed"
    except (OSError, subprocess.SubprocessError) as error:
        why = f"git did not answer ({type(error).__name__})"
    given = os.environ.get(COMMIT_VARIABLE, "").strip()
    if given not in ("unknown", ""):
        return given, f"{why}; the commit is as {COMMIT_VARIABLE} gives it"
    return None, f"{why}; set {COMMIT_VARIABLE} to record it"


def build_metrics(*, config, recipe, data, device, params: int, result, test) -> dict:
    """Everything a reader needs to judge the run, as plain JSON-friendly values."""
    commit, commit_note = commit_and_reason()
    metrics = {
        "architecture": config.architecture,
        "params": params,
        "test_accuracy": test.accuracy,
        "test_accuracy_ci95": list(test.interval),  # Wilson score interval, percent
        "test_loss": test.loss,
        "ece": test.ece,
        "per_class": per_class_scores(test.labels, test.predicted, data.classes),
        "best_val_accuracy": result.best_val_accuracy,
        # best.pt holds the best validation epoch's weights; the test measures the final
        # epoch's network, as the report did (null in an evaluation, which trains nothing).
        "best_val_epoch": best_epoch(result.history),
        "tested_epoch": result.history[-1]["epoch"] if result.history else None,
        "epochs": config.epochs,
        "epochs_completed": result.epochs_completed,
        # Sum of the epochs' seconds (training + validation), over resumed segments too.
        "wall_time_s": sum(h["seconds"] for h in result.history),
        # The training step that ran ("eager", "compiled" or "compiled + CUDA graph") and the
        # seconds spent compiling and capturing it before epoch 1 (not in wall_time_s).
        "training_step": result.step_kind,
        "warmup_s": result.warmup_s,
        # How training computed, and how fast: images trained per second of training steps
        # (augmentation included, validation not), over all epochs.
        "training_precision": result.precision if result.history else None,
        "memory_format": result.memory_format if result.history else None,
        "images_per_second": images_per_second(result.history),
        "device": device_name(device),
        # The CPU by model and by the flags that decide its speed: machines of one cloud kind
        # share a model name ("AMD EPYC") and train bf16 natively or emulate it, 6x slower.
        **cpu_record(), "cpu_computes_bf16": cpu_computes_bf16(),
        "data_source": config.data_source,
        "data": data.to_dict(),
        "train_images": len(data.train),
        "val_images": len(data.val),
        "test_images": len(data.test),
        "recipe": recipe.name,
        "recipe_settings": recipe.to_dict(),
        "seed": config.seed,
        "pipeline": config.pipeline,
        "batch_size": config.batch_size,
        "config": config.to_dict(),
        "history": result.history,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "commit": commit,
        "commit_note": commit_note,  # why git could not tell the commit; null where it did
        "reference_test_accuracy": REFERENCE_TEST_ACCURACY,
    }
    if config.evaluate_only:
        metrics["evaluated_weights"] = list(config.model_weights)
    if test.member_accuracies:
        metrics["ensemble_members"] = [{"path": path, "test_accuracy": accuracy} for path, accuracy
                                       in zip(config.model_weights, test.member_accuracies)]
    if data.is_synthetic:
        metrics = {"warning": SYNTHETIC_WARNING, "synthetic_data": True, **metrics}
    return metrics


def network_words(metrics: dict) -> str:
    """"resnet, 295,706 parameters (width_multiplier 0.25), int8 weights computed on the CPU"."""
    words = f"{metrics['architecture']}, {metrics['params']:,} parameters"
    full = NetworkShape()  # the report's network: files from before sizes were recorded hold it
    width = metrics.get("width_multiplier", full.width_multiplier)
    blocks = metrics.get("blocks", list(full.blocks))
    sizes = [f"width_multiplier {width:g}"] * (width != full.width_multiplier) + \
        [f"blocks {blocks}"] * (blocks != list(full.blocks))
    words += f" ({', '.join(sizes)})" if sizes else ""
    return words + (", int8 weights computed on the CPU" if metrics.get("quantization") else "")


def images_per_second(history: List[dict]) -> Optional[float]:
    """Training images per second over a run's epochs: all images over all the steps' seconds
    (None for runs from before it was recorded, and for evaluations). Every epoch trains the
    same number of images, so that is the harmonic mean of the epochs' rates."""
    rates = [h["images_per_second"] for h in history if h.get("images_per_second")]
    return statistics.harmonic_mean(rates) if rates else None


def best_epoch(history: List[dict]) -> Optional[int]:
    """The epoch of the best validation accuracy, the first where several share it (best.pt's
    epoch), or None without validation."""
    scored = [h for h in history if h.get("val_accuracy") is not None]
    return max(scored, key=lambda h: h["val_accuracy"])["epoch"] if scored else None


def best_words(metrics: dict) -> str:
    """", epoch 2 (best.pt; the test measures epoch 3's network, the last)" for a training run
    whose best validation epoch is not its last."""
    best, tested = metrics.get("best_val_epoch"), metrics.get("tested_epoch")
    if best is None or tested is None:
        return ""
    if best == tested:
        return f", epoch {best}, the last (its weights are best.pt and model.pt)"
    return (f", epoch {best} (its weights are best.pt; the test measures the network of the "
            f"last epoch, {tested}, as the report did)")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def summary(metrics: dict) -> str:
    """The closing lines: our test accuracy beside the report's, and the parameter count."""
    lines = []
    if metrics.get("synthetic_data"):
        lines.append(f"*** {SYNTHETIC_WARNING} ***")
    val = metrics["best_val_accuracy"]
    lines += [
        f"test accuracy      {format_accuracy(metrics['test_accuracy'], metrics['test_images'])}",
        f"the report         {REFERENCE_TEST_ACCURACY:.2f} % on all 10,000 official test images",
        f"data               {metrics['data']['description']}",
        f"calibration error  {metrics['ece']:.2f} %   (ECE, 15 bins)",
        f"test-time views    {metrics.get('test_time_augmentation', 'none')} (test-time augmentation)",
        "best val accuracy  " + (f"{val:.2f} % on {metrics['val_images']:,} validation images"
                                 + best_words(metrics) if val is not None
                                 else "n/a (no validation images)"),
        f"network            {network_words(metrics)}",
    ]
    if "evaluated_weights" in metrics:
        lines += [f"weights            {', '.join(metrics['evaluated_weights'])} (not trained here)",
                  f"evaluated on       {metrics['device']}"]
    else:
        lines += [f"recipe             {metrics['recipe']}, {_count(metrics['epochs_completed'], 'epoch')}, "
                  f"batch {metrics['batch_size']}, pipeline {metrics['pipeline']}",
                  f"training time      {metrics['wall_time_s']:.1f} s on {metrics['device']} "
                  f"({metrics['training_step']} step, {metrics.get('training_precision')}, "
                  f"{metrics.get('memory_format')}"
                  + (f", {metrics['images_per_second']:,.0f} images/s"
                     if metrics.get("images_per_second") else "")
                  + (f", {metrics['warmup_s']:.1f} s warm-up before epoch 1)"
                     if metrics["warmup_s"] else ")")]
    return "\n".join(lines)


# --- the measured runs under results/ -------------------------------------------------------

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


def grouped(runs: List[dict]) -> List[List[dict]]:
    """Runs of one setting together (by seed): those trained on the official images (the
    report's data) first, then GPU before CPU, reference first, as shipped before its variants."""
    groups: Dict[tuple, List[dict]] = {}
    for run in runs:
        config = {k: v for k, v in run["config"].items() if k not in INCIDENTAL}
        key = json.dumps(config, sort_keys=True), run["device"], run["commit"]
        groups.setdefault(key, []).append(run)
    for group in groups.values():
        group.sort(key=lambda r: r["seed"])
    return sorted(groups.values(), key=lambda group: (
        "official" not in group[0]["data"].get("train", {}).get("name", ""),
        group[0]["device"] == "cpu", group[0]["recipe"] != "reference",
        bool(group[0]["config"].get("recipe_overrides")), group[0]["val_images"]))


def is_full_length(run: dict) -> bool:
    """A 75-epoch-style run on all 50,000 training images, on a GPU or a CPU: what the summary
    shows."""
    return not run["val_images"] and run["train_images"] == 50_000


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
        lines.append("- Not yet measured: the full network trained on the official images, the "
                     "report's data (a run on a CPU is in progress, "
                     "scripts/reference_official_cpu.py; the README has a quarter-width network "
                     "trained on them).")
    return lines


# --- the epochs ----------------------------------------------------------------------------

def format_history(history: List[dict]) -> str:
    """Every epoch's learning rate, losses, accuracies (percent) and seconds as one table."""
    tested = any(h.get("test_accuracy") is not None for h in history)
    lines = [f"{'epoch':>5} {'lr':>9} {'train loss':>10} {'train acc':>9} {'val loss':>8} "
             f"{'val acc':>7}{' test acc' if tested else ''} {'seconds':>7}"]

    def number(value, width, digits):
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    for h in history:
        lines.append(f"{h['epoch']:>5} {h['lr']:>9.4g} {number(h['train_loss'], 10, 3)} "
                     f"{number(h['train_accuracy'], 9, 2)} {number(h['val_loss'], 8, 3)} "
                     f"{number(h['val_accuracy'], 7, 2)}"
                     + (f" {number(h.get('test_accuracy'), 8, 2)}" if tested else "")
                     + f" {h['seconds']:>7.1f}")
    return "\n".join(lines)


def format_epoch(entry: dict, epochs: int) -> str:
    """One concise log line per epoch."""
    val = "" if entry["val_accuracy"] is None else \
        f"  val loss {entry['val_loss']:.3f} acc {entry['val_accuracy']:5.2f}%"
    test = "" if entry.get("test_accuracy") is None else f"  (test acc {entry['test_accuracy']:5.2f}%)"
    speed = f", {entry['images_per_second']:,.0f} img/s" if entry.get("images_per_second") else ""
    return (f"epoch {entry['epoch']:>3}/{epochs}  lr {entry['lr']:.4g}  train loss "
            f"{entry['train_loss']:.3f} acc {entry['train_accuracy']:5.2f}%{val}  "
            f"{entry['seconds']:.1f} s{speed}{test}")


# --- what a run does, in words --------------------------------------------------------------

def images_words(size: Optional[int], split: str) -> str:
    return f"{size:,} {split} images ({subset_rule(size)})" if size else f"all {split} images"


def heading(config, recipe_name: str, resumed_after: Optional[int],
            changed: Sequence[str]) -> MarkdownText:
    """What a run does, in a sentence of Markdown, and the parameters set away from their
    defaults (`changed`, as "`name=value`"): the opening of every executed notebook (and of the
    command line's output), so that saved outputs always say which run made them."""
    tested = images_words(config.test_subset, "test")
    source = {"torchvision": f"CIFAR-10 as torchvision downloads it into `{config.data_dir}`",
              "folder": f"the image folders in `{config.data_dir}`",
              "synthetic": SYNTHETIC}[config.data_source]
    if config.evaluate_only:
        weights = " and ".join(f"`{path}`" for path in config.model_weights)
        does = f"evaluates {weights}, trained elsewhere, on {tested} of {source}"
    else:
        held_out = f"{config.val_size:,} of them held out for validation" if config.val_size else \
            "none held out for validation"
        epochs = f"{config.epochs} epoch{'s' * (config.epochs != 1)}"
        first = None if resumed_after is None else resumed_after + 1
        if first is not None:
            epochs = (f"no more epochs (resumed: its checkpoint holds all {config.epochs})"
                      if first > config.epochs else f"epoch {first} (resumed)"
                      if first == config.epochs else f"epochs {first} to {config.epochs} (resumed)")
        does = (f"trains the `{config.architecture}` network with the {recipe_name} recipe "
                f"for {epochs} (seed {config.seed}) on "
                f"{images_words(config.train_subset, 'training')} of {source}, "
                f"{held_out}, and tests it on {tested}")
    return MarkdownText(f"**This run** {does}; its files go to `{config.output_dir}`.\n\n"
                        f"Parameters set away from their defaults: {', '.join(changed) or 'none'}.")


def trained_by(weights: str) -> str:
    """How a weights file was trained, as the run in its folder recorded it; or that nothing
    was recorded. That run's test accuracy is its model.pt's: any other file of the run (its
    best.pt, say) is named as what it is, without that accuracy."""
    metrics = run_record(weights)
    if metrics is None:
        return "no metrics.json beside it, so how it was trained is not known here"
    data = metrics.get("data", {})
    trained_on = data.get("train", {}).get("name", metrics["data_source"])
    tested = data.get("test", {}).get("name", "its test images")
    epochs = metrics["epochs_completed"]
    overrides = metrics.get("config", {}).get("recipe_overrides")
    run = (f"the {metrics['recipe']} recipe{f' with recipe_overrides={overrides}' if overrides else ''}, "
           f"{epochs} epoch{'s' * (epochs != 1)}, batch {metrics['batch_size']}, seed "
           f"{metrics['seed']}, on {trained_on}; {hardware(metrics)}, commit {str(metrics['commit'])[:7]}")
    if os.path.basename(weights) != "model.pt":
        return (f"{run}; this is that run's {os.path.basename(weights)}, not its model.pt, so the "
                f"test accuracy it recorded is not this file's")
    return f"{run}; it recorded {format_accuracy(metrics['test_accuracy'], metrics['test_images'])} on {tested}"


def training_images(name: str, trained: int, held_out: int) -> str:
    """"CIFAR-10 official training images (n = 45,000 trained on, 5,000 held out for
    validation)"."""
    held = f"{held_out:,} held out for validation" if held_out else "none held out for validation"
    return f"{name} (n = {trained:,} trained on, {held})"


def recorded_training_images(metrics: dict) -> str:
    """The training images a recorded run names in its metrics.json (older runs: its source)."""
    name = metrics.get("data", {}).get("train", {}).get("name", metrics["data_source"])
    return training_images(name, metrics["train_images"], metrics["val_images"])


def recorded_by(metrics: dict, run_name: str) -> str:
    """"recorded by results/reference-seed0 (NVIDIA H200, commit 043b441)"."""
    return f"recorded by {run_name} ({hardware(metrics)}, commit {str(metrics['commit'])[:7]})"


def quality_report(test, test_name: str, classes: Sequence[str],
                   members: Sequence[str] = ()) -> str:
    """Accuracy, calibration error, per-class precision/recall/F1 (helpers/evaluation.py's
    TestEvaluation `test` on the images `test_name` names), and an ensemble's `members` alone."""
    lines = [f"test accuracy {format_accuracy(test.accuracy, len(test.labels))} on {test_name}",
             f"(the report: {REFERENCE_TEST_ACCURACY:.2f} % on all 10,000 official test images)",
             f"expected calibration error {test.ece:.2f} % (15 bins)", "",
             format_per_class(per_class_scores(test.labels, test.predicted, classes))]
    if test.member_accuracies:
        lines += ["", "ensemble members alone:"]
        lines += [f"  {path}: {accuracy:.2f} %" for path, accuracy in zip(members, test.member_accuracies)]
    return "\n".join(lines)


def confusions(labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> MarkdownText:
    """What this run's confusion matrix shows, in a sentence: the classes it predicted, and its
    most frequent confusions with their counts; nothing is said that the counts do not show."""
    wrong = labels != predicted
    used = np.unique(predicted)
    if len(used) < len(classes):
        return MarkdownText(f"This network predicted only {len(used)} of the {len(classes)} "
                            f"classes ({', '.join(classes[c] for c in used)}), so its mistakes "
                            "say more about its training than about which classes look alike.")
    if not wrong.any():
        return MarkdownText("It made no mistakes on these images.")
    pairs = Counter(zip(labels[wrong].tolist(), predicted[wrong].tolist()))
    # Ties in the order of the classes, not in the order first seen (Counter.most_common's).
    top = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:3]
    listed = "; ".join(f"{classes[t]} taken for {classes[g]} {n} time{'s' * (n != 1)}"
                       for (t, g), n in top)
    return MarkdownText(f"Its most frequent confusions ({int(wrong.sum()):,} mistakes in all): "
                        f"{listed}.")


def conclusions(config, metrics: dict, test_name: str, train_name: str, synthetic: bool,
                results_dir: str = "") -> MarkdownText:
    """The closing paragraph, computed: this run's accuracy with its interval beside the
    report's, what was trained or evaluated on which data, and what the measured runs in
    results/ say the improved recipe and the options change."""
    lines = [f"**Test accuracy {format_accuracy(metrics['test_accuracy'], metrics['test_images'])}** "
             f"on {test_name}; the report: {REFERENCE_TEST_ACCURACY:.2f} % on all 10,000 official "
             "test images."]
    if config.evaluate_only:
        lines.append(f"The weights were trained elsewhere ({'; '.join(map(trained_by, config.model_weights))}) "
                     f"and evaluated here on {metrics['device']}.")
    else:
        epochs = metrics["epochs_completed"]
        lines.append(f"Trained here: the {metrics['recipe']} recipe, {epochs} "
                     f"epoch{'s' * (epochs != 1)} on {train_name}, {metrics['wall_time_s']:.0f} s on "
                     f"{metrics['device']} ({metrics['training_step']} step).")
    if "0–999" in test_name:
        lines.append("Images 0–999 are a sample of the official test set: the interval above is "
                     "their sampling spread, and how an accuracy on them compares with one on all "
                     "10,000 is not yet measured.")
    elif "JPEG mirror" in test_name:
        lines.append("The JPEG mirror's test images are lossy copies: accuracies on them run below "
                     "the official images'.")
    elif synthetic:
        lines.append(f"**{SYNTHETIC_WARNING}.**")
    lines.append(f"The network is {network_words(metrics)} (the report's: "
                 f"{REFERENCE_PARAMETER_COUNT:,} parameters).")
    folder = results_dir or RESULTS_DIR
    measured = measured_lines(load_runs(folder), load_runs(folder, evaluations=True))
    return MarkdownText("\n\n".join([
        " ".join(lines),
        "What the recipes and options measured (results/, with their hardware and commits in "
        "results/README.md):", "\n".join(measured)]))
