"""Evaluation on the test images: accuracy, calibration and per-class quality, for one network
or an ensemble of several.

Calibration asks whether a prediction made with 90 % confidence is right 90 % of the time. The
expected calibration error (ECE; Guo et al. 2017) sorts the predictions into 15 equal-width
confidence bins and averages |accuracy - mean confidence| over the bins, weighted by their sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

CALIBRATION_BINS = 15


class Ensemble(nn.Module):
    """Averages its members' softmax probabilities; returns their log, which serves as logits
    (softmax of it gives back the average), so prediction and TTA work unchanged."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([member(x).float().softmax(1) for member in self.members])
        return probabilities.mean(0).log()


@dataclass(frozen=True)
class TestEvaluation:
    """The final model on the test set, with what error analysis and the report need."""

    accuracy: float
    loss: float
    labels: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    ece: float
    member_accuracies: Optional[List[float]] = None  # ensembles: each member alone

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels


def from_logits(logits: torch.Tensor, labels: torch.Tensor,
                member_accuracies: Optional[List[float]] = None) -> TestEvaluation:
    """Accuracy (percent), loss, predictions, confidences and ECE from test logits."""
    confidence, predicted = torch.softmax(logits.float(), 1).max(1)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels).item()
    predicted, labels = predicted.cpu().numpy(), labels.cpu().numpy()
    confidence = confidence.cpu().numpy()
    return TestEvaluation(100 * float(np.mean(predicted == labels)), loss, labels, predicted,
                          confidence, expected_calibration_error(confidence, predicted == labels),
                          member_accuracies)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray,
                     bins: int = CALIBRATION_BINS) -> Dict[str, np.ndarray]:
    """Per equal-width confidence bin: edges, count, mean confidence and accuracy (NaN where a
    bin is empty)."""
    edges = np.linspace(0, 1, bins + 1)
    # Bins are (low, high]; a confidence of exactly 0 goes into the first.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct.astype(float), minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = CALIBRATION_BINS) -> float:
    """ECE in percent: the size-weighted mean gap between accuracy and confidence per bin."""
    table = reliability_bins(confidence, correct, bins)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return 100 * float(np.sum(gaps * table["count"][filled]) / max(len(confidence), 1))


def per_class_scores(labels: np.ndarray, predicted: np.ndarray,
                     classes: Sequence[str]) -> Dict[str, dict]:
    """Precision, recall and F1 (percent) and the number of test images of each class."""
    scores = {}
    for c, name in enumerate(classes):
        hits = np.sum((predicted == c) & (labels == c))
        predicted_as, actual = np.sum(predicted == c), np.sum(labels == c)
        precision = 100 * hits / predicted_as if predicted_as else 0.0
        recall = 100 * hits / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                        "support": int(actual)}
    return scores


def format_per_class(scores: Dict[str, dict]) -> str:
    """The per-class scores as an aligned text table, with their unweighted mean."""
    lines = [f"{'class':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'images':>7}"]
    for name, s in scores.items():
        lines.append(f"{name:<12} {s['precision']:>8.1f}% {s['recall']:>6.1f}% "
                     f"{s['f1']:>5.1f}% {s['support']:>7}")
    means = {key: np.mean([s[key] for s in scores.values()]) for key in ("precision", "recall", "f1")}
    lines.append(f"{'mean':<12} {means['precision']:>8.1f}% {means['recall']:>6.1f}% "
                 f"{means['f1']:>5.1f}% {sum(s['support'] for s in scores.values()):>7}")
    return "\n".join(lines)
