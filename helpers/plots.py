"""Figures. Each function takes data and returns a matplotlib Figure; `save_figure` writes it."""
from __future__ import annotations

import os
import textwrap
from typing import List, Optional, Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import seaborn as sns
import torch

from .augment import denormalize
from .evaluation import expected_calibration_error, reliability_bins

def _to_pixels(images: torch.Tensor) -> np.ndarray:
    """Normalized float (N, 3, H, W) -> displayable floats (N, H, W, 3) in [0, 1]."""
    return denormalize(images.detach().float().cpu()).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def figure_title(figure: plt.Figure, title: str, fontsize: float = 10) -> None:
    """`title` above the whole figure, each line wrapped to the figure's width."""
    characters = int(figure.get_figwidth() * 72 / (0.55 * fontsize))  # ~0.55 em per character
    # Paths and names are never split: lines break only between words.
    lines = [textwrap.fill(line, characters, break_long_words=False, break_on_hyphens=False)
             for line in title.splitlines()]
    figure.suptitle("\n".join(lines), fontsize=fontsize)


def _image_grid(pixels: np.ndarray, titles: Sequence[str], columns: int, title: str) -> plt.Figure:
    rows = max(1, int(np.ceil(len(pixels) / columns)))
    # Constrained layout makes room for each image's caption; tight_layout lets a two-line
    # caption run into the image above it.
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 2.0 * rows), squeeze=False,
                                layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, text in zip(axes.flat, pixels, titles):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(text, fontsize=8)
    figure_title(figure, title, fontsize=12)
    return figure


def augmented_samples(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                      title: str, columns: int = 8) -> plt.Figure:
    """A grid of augmented, normalized training images with their labels, under `title`
    (which images, and whose augmentation)."""
    titles = [classes[int(label)] for label in labels]
    return _image_grid(_to_pixels(images), titles, columns, title)


def _marker(points: int) -> Optional[str]:
    # A line through one or two points is invisible or says little: short runs get markers.
    return "o" if points <= 30 else None


def training_curves(history: List[dict], title: Optional[str] = None) -> plt.Figure:
    """Loss and accuracy per epoch, training and validation (and test, where recorded), under
    `title` (whose training, on which images). The loss axis is logarithmic, so that one early
    epoch's spike (a validation loss of 1,000 after epoch 1 of a short run) does not flatten
    the rest."""
    epochs = [h["epoch"] for h in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    marker = _marker(len(epochs))
    for split, style in (("train", "-"), ("val", "--")):
        if any(h[f"{split}_loss"] is not None for h in history):
            loss_axis.plot(epochs, [h[f"{split}_loss"] for h in history], style, marker=marker,
                           label=split)
            accuracy_axis.plot(epochs, [h[f"{split}_accuracy"] for h in history], style,
                               marker=marker, label=split)
    if any(h.get("test_accuracy") is not None for h in history):
        accuracy_axis.plot(epochs, [h.get("test_accuracy") for h in history], ":", marker=marker,
                           label="test (recorded only)")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy loss (log scale)", title="Loss",
                  yscale="log")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3, which="both")
        axis.legend()
    if title:
        figure_title(figure, title)
    figure.tight_layout()
    return figure


def lr_schedule(history: List[dict], title: str = "Learning-rate schedule") -> plt.Figure:
    """Learning rate at the start of each epoch, under `title` (whose schedule it is)."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    axis.step([h["epoch"] for h in history], [h["lr"] for h in history], where="post",
              marker=_marker(len(history)))
    axis.set(xlabel="epoch", ylabel="learning rate", yscale="log")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    figure_title(figure, title)
    figure.tight_layout()
    return figure


def history_figures(epochs: List[dict], whose: str, images: str) -> dict:
    """Training curves and learning rates per epoch, each titled with whose training it was
    and on which images."""
    return {"training_curves": training_curves(epochs, f"Training, {whose}:\n{images}"),
            "lr_schedule": lr_schedule(epochs, f"Learning-rate schedule, {whose}:\n{images}")}


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
                     images: str) -> plt.Figure:
    """Seaborn heatmap of counts: rows are true classes, columns predicted classes; `images`
    names the images in the title."""
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (true, predicted), 1)
    figure, axis = plt.subplots(figsize=(8, 6.5))
    sns.heatmap(counts, annot=True, fmt="d", cmap="Blues", xticklabels=classes,
                yticklabels=classes, ax=axis, cbar=False)
    axis.set(xlabel="predicted", ylabel="true")
    figure_title(figure, f"Confusion matrix\n{images}", fontsize=12)
    figure.tight_layout()
    return figure


def per_class_accuracy(true: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
                       images: str) -> plt.Figure:
    """Bar chart of test accuracy per class, with each class's number of images."""
    accuracy = [100 * np.mean(predicted[true == c] == c) if np.any(true == c) else 0.0
                for c in range(len(classes))]
    figure, axis = plt.subplots(figsize=(8, 3.5))
    bars = axis.bar(classes, accuracy, color=sns.color_palette("deep", len(classes)))
    axis.bar_label(bars, fmt="%.1f", fontsize=8)
    counts = np.bincount(true, minlength=len(classes))
    axis.set_xticks(range(len(classes)), [f"{name}\n(n = {n})" for name, n in zip(classes, counts)])
    axis.set(ylabel="accuracy (%)", ylim=(0, 110))  # room for a label above 100 %
    figure_title(figure, f"Per-class accuracy\n{images}", fontsize=12)
    axis.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    return figure


def reliability_diagram(confidence: np.ndarray, correct: np.ndarray, images: str) -> plt.Figure:
    """Accuracy against confidence in 15 bins, beside the diagonal of perfect calibration,
    with the share of test images in each bin."""
    table = reliability_bins(confidence, correct)
    edges, filled = table["edges"], table["count"] > 0
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    figure, (axis, share_axis) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 1]})
    axis.bar(centres[filled], 100 * table["accuracy"][filled], width=width * 0.9,
             edgecolor="black", label="accuracy")
    axis.plot([0, 1], [0, 100], "--", color="gray", label="perfect calibration")
    axis.plot(centres[filled], 100 * table["confidence"][filled], "o", color="C3",
              label="mean confidence")
    axis.set(ylabel="accuracy (%)", ylim=(0, 100))
    ece = expected_calibration_error(confidence, correct)
    figure_title(figure, f"Reliability diagram, ECE {ece:.2f} %\n{images}", fontsize=12)
    axis.legend(loc="upper left")
    share_axis.bar(centres, 100 * table["count"] / max(len(confidence), 1), width=width * 0.9,
                   color="gray")
    share_axis.set(xlabel="confidence", ylabel="% of images", xlim=(0, 1))
    figure.tight_layout()
    return figure


def misclassified_gallery(images: np.ndarray, true: np.ndarray, predicted: np.ndarray,
                          confidence: np.ndarray, classes: Sequence[str], name: str,
                          count: int = 24) -> plt.Figure:
    """The most confidently wrong of the test images `name` names, with true label, prediction
    and confidence."""
    wrong = np.flatnonzero(true != predicted)
    chosen = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    titles = [f"{classes[true[i]]}\n→ {classes[predicted[i]]} {100 * confidence[i]:.0f}%"
              for i in chosen]
    accuracy = 100 * (1 - len(wrong) / max(len(true), 1))
    return _image_grid(images[chosen] / 255.0, titles, 8,
                       f"Most confident mistakes: {len(wrong):,} of {len(true):,} wrong "
                       f"(accuracy {accuracy:.2f} %)\n{name}")


def save_figure(figure: plt.Figure, folder: str, name: str) -> str:
    """Write `figure` as folder/name.png and return the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path
