"""Evaluation: the network's logits averaged over test-time views, loss and accuracy on a
labelled set, and on the test images accuracy with its sampling interval, calibration and
per-class quality, for one network or an ensemble of several.

A test accuracy is a proportion measured on n images, and n = 1,000 leaves about +-1.6 points of
95 % sampling uncertainty near 93 %. Every accuracy is reported with its Wilson score interval
(Wilson 1927; recommended over the normal approximation by Brown, Cai & DasGupta 2001).

Calibration asks whether a prediction made with 90 % confidence is right 90 % of the time. The
expected calibration error (ECE; Guo et al. 2017) sorts the predictions into 15 equal-width
confidence bins and averages |accuracy - mean confidence| over the bins, weighted by their sizes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import normalize
from .distributed import DistributedContext, sum_over_ranks
from .model import device_of
from .recipes import NO_TTA, TestTimeAugmentation

CALIBRATION_BINS = 15
Z_95 = 1.959964  # the standard normal's 97.5 % quantile


def wilson_interval(correct: int, total: int, z: float = Z_95) -> Tuple[float, float]:
    """The Wilson score interval (percent) of an accuracy of `correct` out of `total`; 95 % by
    default. Unlike the normal approximation it stays inside [0, 100] and covers near 0 and 100 %."""
    if total <= 0:
        return 0.0, 100.0
    p, z2 = correct / total, z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def accuracy_interval(accuracy: float, total: int) -> Tuple[float, float]:
    """The Wilson interval of an accuracy given in percent over `total` images."""
    return wilson_interval(round(accuracy * total / 100), total)


def interval_text(accuracy: float, total: int) -> str:
    """"88.5–92.2 %, n = 1,000": an accuracy's 95 % interval and its n."""
    low, high = accuracy_interval(accuracy, total)
    return f"{low:.1f}–{high:.1f} %, n = {total:,}"


def format_accuracy(accuracy: float, total: int) -> str:
    """"90.50 % (95 % interval 88.5–92.2 %, n = 1,000)"."""
    return f"{accuracy:.2f} % (95 % interval {interval_text(accuracy, total)})"


def average_probabilities(member_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """An ensemble's prediction: the log of its members' mean softmax probabilities, which
    serves as logits (softmax of it gives back the mean)."""
    return torch.stack([logits.float().softmax(1) for logits in member_logits]).mean(0).log()


def loss_and_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[summed cross-entropy, correct predictions, count] of a batch, as one tensor (summable
    across batches and ranks)."""
    return torch.stack([F.cross_entropy(logits.float(), labels, reduction="sum"),
                        (logits.argmax(1) == labels).sum().float(),
                        torch.tensor(float(len(labels)), device=logits.device)])


class Ensemble(nn.Module):
    """Averages its members' softmax probabilities (see average_probabilities), so prediction
    and TTA work unchanged."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return average_probabilities([member(x) for member in self.members])


def tta_views(batch: torch.Tensor, tta: TestTimeAugmentation) -> List[Tuple[float, torch.Tensor]]:
    """(weight, view) pairs whose weighted logits are averaged: the image (and its mirror);
    with `tta.translate` n, half the weight goes to copies shifted by -n and +n pixels on both
    axes (reflect padding), as airbench's tta_level=2."""
    shifted = [batch]
    if tta.translate:
        padded = F.pad(batch, (tta.translate,) * 4, mode="reflect")
        size = batch.shape[-1]
        shifted += [padded[..., :size, :size], padded[..., 2 * tta.translate:, 2 * tta.translate:]]
    views = []
    for position, image in enumerate(shifted):
        weight = 1.0 if not tta.translate else (0.5 if position == 0 else 0.25)
        mirrored = [image, image.flip(-1)] if tta.flip else [image]
        views += [(weight / len(mirrored), view) for view in mirrored]
    return views


@torch.inference_mode()
def predict_logits(network: nn.Module, images: torch.Tensor, batch_size: int,
                   tta: TestTimeAugmentation = NO_TTA, amp_dtype: Optional[torch.dtype] = None,
                   channels_last: bool = False) -> torch.Tensor:
    """Logits (N, 10) float32 for uint8 images (N, 3, 32, 32), on the network's device, in
    eval mode, averaged over the test-time views `tta` (see tta_views)."""
    network.eval()
    device = device_of(network)  # an int8 network: the CPU, wherever the images are
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = normalize(images[start:start + batch_size].to(device).float() / 255)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs.append(sum(weight * network(view).float() for weight, view in tta_views(batch, tta)))
    return torch.cat(outputs) if outputs else torch.zeros(0, 10, device=device)


def evaluate(network: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
             tta: TestTimeAugmentation = NO_TTA, amp_dtype: Optional[torch.dtype] = None,
             channels_last: bool = False,
             context: DistributedContext = DistributedContext()) -> Dict[str, float]:
    """Mean loss and accuracy (percent) on labelled uint8 images (N, 3, 32, 32); under DDP
    each rank takes a shard and the totals are summed over ranks."""
    shard = slice(context.rank, None, context.world_size)
    logits = predict_logits(network, images[shard], batch_size, tta, amp_dtype, channels_last)
    totals = loss_and_hits(logits, labels[shard].to(logits.device))
    loss_sum, correct, count = sum_over_ranks(totals, context).tolist()
    return {"loss": loss_sum / max(count, 1), "accuracy": 100 * correct / max(count, 1)}


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

    @property
    def interval(self) -> Tuple[float, float]:
        """95 % Wilson interval of the accuracy (percent)."""
        return wilson_interval(int(self.correct.sum()), len(self.labels))


def from_logits(logits: torch.Tensor, labels: torch.Tensor,
                member_accuracies: Optional[List[float]] = None) -> TestEvaluation:
    """Accuracy (percent), loss, predictions, confidences and ECE from test logits."""
    confidence, predicted = torch.softmax(logits.float(), 1).max(1)
    loss_sum, hits, count = loss_and_hits(logits, labels).tolist()
    predicted, labels = predicted.cpu().numpy(), labels.cpu().numpy()
    confidence = confidence.cpu().numpy()
    return TestEvaluation(100 * hits / max(count, 1), loss_sum / max(count, 1), labels, predicted,
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
