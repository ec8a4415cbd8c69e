"""metrics.json and the closing summary of a run."""
from __future__ import annotations

import os
import platform
import subprocess
from typing import Optional, Tuple

import torch
import torchvision

from .checkpoints import atomic_write_json
from .evaluation import format_accuracy, per_class_scores
from .model import NetworkShape

class MarkdownText(str):
    """Text in Markdown that a notebook renders and a log shows as it is: IPython's Markdown
    object would print as "<IPython.core.display.Markdown object>" in papermill's log."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return str(self)


REFERENCE_TEST_ACCURACY = 93.41  # percent, the Spring 2025 report, official CIFAR-10 test set
SYNTHETIC_WARNING = "SYNTHETIC DATA: these numbers say nothing about CIFAR-10"


def device_name(device: torch.device) -> str:
    """'cuda: NVIDIA H100 80GB HBM3' or 'cpu'."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return "cpu"


COMMIT_VARIABLE = "CIFAR10_RESNET_COMMIT"  # the commit, where the code travels without .git
NO_COMMIT = ("unknown", "")


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
    if given not in NO_COMMIT:
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
        "epochs": config.epochs,
        "epochs_completed": result.epochs_completed,
        # Sum of the epochs' seconds (training + validation), over resumed segments too.
        "wall_time_s": sum(h["seconds"] for h in result.history),
        # The training step that ran ("eager", "compiled" or "compiled + CUDA graph") and the
        # seconds spent compiling and capturing it before epoch 1 (not in wall_time_s).
        "training_step": result.step_kind,
        "warmup_s": result.warmup_s,
        "device": device_name(device),
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


def write_metrics(path: str, metrics: dict) -> None:
    atomic_write_json(path, metrics)


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
                                 if val is not None else "n/a (no validation images)"),
        f"network            {network_words(metrics)}",
    ]
    if "evaluated_weights" in metrics:
        lines += [f"weights            {', '.join(metrics['evaluated_weights'])} (not trained here)",
                  f"evaluated on       {metrics['device']}"]
    else:
        lines += [f"recipe             {metrics['recipe']}, {_count(metrics['epochs_completed'], 'epoch')}, "
                  f"batch {metrics['batch_size']}, pipeline {metrics['pipeline']}",
                  f"training time      {metrics['wall_time_s']:.1f} s on {metrics['device']} "
                  f"({metrics['training_step']} step"
                  + (f", {metrics['warmup_s']:.1f} s warm-up before epoch 1)"
                     if metrics["warmup_s"] else ")")]
    return "\n".join(lines)
