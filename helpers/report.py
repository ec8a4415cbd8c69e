"""metrics.json and the closing summary of a run."""
from __future__ import annotations

import os
import platform
import subprocess
from typing import Optional

import torch
import torchvision

from .checkpoints import atomic_write_json

REFERENCE_TEST_ACCURACY = 93.41  # percent, the Spring 2025 report, official CIFAR-10 test set
SYNTHETIC_WARNING = "SYNTHETIC DATA: these numbers say nothing about CIFAR-10"


def device_name(device: torch.device) -> str:
    """'cuda: NVIDIA H100 80GB HBM3' or 'cpu'."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return "cpu"


def git_commit() -> Optional[str]:
    """The commit of the code that ran, with '+dirty' when files were changed; None outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def build_metrics(*, config, recipe, data, device, params: int, result, test: dict) -> dict:
    """Everything a reader needs to judge the run, as plain JSON-friendly values."""
    metrics = {
        "params": params,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "best_val_accuracy": result.best_val_accuracy,
        "epochs": config.epochs,
        "epochs_completed": result.epochs_completed,
        # Sum of the epochs' seconds (training + validation), over resumed segments too.
        "wall_time_s": sum(h["seconds"] for h in result.history),
        "device": device_name(device),
        "data_source": config.data_source,
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
        "commit": git_commit(),
        "reference_test_accuracy": REFERENCE_TEST_ACCURACY,
    }
    if data.is_synthetic:
        metrics = {"warning": SYNTHETIC_WARNING, "synthetic_data": True, **metrics}
    return metrics


def write_metrics(path: str, metrics: dict) -> None:
    atomic_write_json(path, metrics)


def summary(metrics: dict) -> str:
    """The closing lines: our test accuracy beside the report's, and the parameter count."""
    lines = []
    if metrics.get("synthetic_data"):
        lines.append(f"*** {SYNTHETIC_WARNING} ***")
    val = metrics["best_val_accuracy"]
    lines += [
        f"test accuracy      {metrics['test_accuracy']:6.2f} %   (reference report: "
        f"{REFERENCE_TEST_ACCURACY:.2f} %, official test set)",
        "best val accuracy  " + (f"{val:6.2f} %" if val is not None else "   n/a (val_size=0)"),
        f"parameters         {metrics['params']:,}",
        f"recipe             {metrics['recipe']}, {metrics['epochs_completed']} epochs, "
        f"batch {metrics['batch_size']}, pipeline {metrics['pipeline']}",
        f"data               {metrics['data_source']} ({metrics['train_images']} train / "
        f"{metrics['val_images']} val / {metrics['test_images']} test)",
        f"training time      {metrics['wall_time_s']:.1f} s on {metrics['device']}",
    ]
    if metrics["config"]["model_weights"] is not None:
        lines[-2:] = [f"weights            {metrics['config']['model_weights']} (not trained here)",
                      f"evaluated on       {metrics['device']}"]
    return "\n".join(lines)
