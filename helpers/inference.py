"""Inference: a Predictor (a network or an ensemble, each member with its test-time
augmentation), predict() on raw uint8 images, and the Kaggle submission from an unlabeled pickle.
The one path from images to labels: the test accuracy, submission.csv and `predict` all use it.

Predictions are made the way the reported test accuracy was measured: the Predictor that the
evaluation scores is the one that labels submission.csv, and weights loaded from a file use the
test-time augmentation their run recorded.

The test pickle comes from outside the project, and pickle.load runs whatever code a pickle
names. It is therefore read with a restricted unpickler that can build only plain containers,
bytes, strings, numbers and numpy arrays.
"""
from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .augment import to_nchw
from .env import ExplainedError
from .evaluation import average_probabilities, predict_logits
from .files import atomic_write_text, read_weights
from .recipes import NO_TTA, TestTimeAugmentation


class SubmissionError(ExplainedError, ValueError):
    """The unlabeled test pickle cannot be used; the message says what is wrong with it."""


# The only globals a pickle of dicts, lists and numpy arrays needs (numpy 1 and 2 spellings).
SAFE_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
    ("_codecs", "encode"),  # how protocol 2 stores bytes
    ("builtins", "bytearray"), ("builtins", "set"), ("builtins", "frozenset"),
    ("collections", "OrderedDict"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside SAFE_PICKLE_GLOBALS (so no code can run)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain "
                                         "containers, numbers, strings and numpy arrays are allowed")
        return super().find_class(module, name)


def safe_load_pickle(path: str):
    """pickle.load with RestrictedUnpickler; python-2 pickles (CIFAR-style) read as bytes."""
    with open(path, "rb") as file:
        return RestrictedUnpickler(io.BytesIO(file.read()), encoding="bytes").load()


def _entry(content: dict, key: str):
    for candidate in (key.encode(), key):
        if candidate in content:
            return content[candidate]
    raise SubmissionError(f"the test pickle has no {key!r} entry (keys: "
                          f"{sorted(map(repr, content))}); expected b'data' and b'ids'")


def submission_ids(ids) -> list:
    """The ids as they go into submission.csv: numbers or text. A pickle written by Python 2
    (CIFAR's own) and read as bytes holds b"0"-style byte strings; they are text, decoded."""
    values = np.asarray(ids).tolist() if isinstance(ids, np.ndarray) else list(ids)
    readable = []
    for value in values:
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise SubmissionError(f"kaggle_test_pkl b'ids' holds bytes that are not text "
                                      f"({bytes(value)[:20]!r}); expected numbers or text") from None
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise SubmissionError(f"kaggle_test_pkl b'ids' holds a {type(value).__name__} "
                                  f"({value!r}); expected integers or text")
        readable.append(value)
    return readable


def load_kaggle_test(path: str) -> Tuple[np.ndarray, list]:
    """(images uint8 (N, 32, 32, 3), ids) from a pickle with b'data' and b'ids'."""
    if not os.path.isfile(path):
        raise SubmissionError(f"kaggle_test_pkl={path!r} does not exist")
    try:
        content = safe_load_pickle(path)
    except Exception as error:
        raise SubmissionError(f"kaggle_test_pkl={path!r} cannot be read safely: {error}") from None
    if not isinstance(content, dict):
        raise SubmissionError(f"kaggle_test_pkl={path!r} holds a {type(content).__name__}, "
                              "expected a dict with b'data' and b'ids'")
    data, ids = np.asarray(_entry(content, "data")), _entry(content, "ids")
    if data.dtype != np.uint8:
        raise SubmissionError(f"kaggle_test_pkl b'data' has dtype {data.dtype}; expected uint8")
    if data.ndim == 2 and data.shape[1] == 3072:
        # CIFAR's row layout: 1024 red, then 1024 green, then 1024 blue values.
        data = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    if data.ndim != 4 or data.shape[1:] != (32, 32, 3):
        raise SubmissionError(f"kaggle_test_pkl b'data' has shape {data.shape}; expected "
                              "(N, 32, 32, 3) or (N, 3072)")
    ids = submission_ids(ids)
    if len(ids) != len(data):
        raise SubmissionError(f"kaggle_test_pkl has {len(data)} images but {len(ids)} ids")
    if len(set(ids)) != len(ids):
        raise SubmissionError("kaggle_test_pkl b'ids' are not unique")
    return np.ascontiguousarray(data), ids


@dataclass
class Predictor:
    """A network, or an ensemble of several, each with the test-time augmentation it is
    evaluated with; an ensemble averages its members' probabilities (average_probabilities)."""

    members: List[Tuple[nn.Module, TestTimeAugmentation]]
    batch_size: int = 1024
    amp_dtype: Optional[torch.dtype] = None

    def member_logits(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Each member's logits (N, 10) for uint8 images (N, 3, 32, 32), with its own views."""
        return [predict_logits(network, images, self.batch_size, tta, self.amp_dtype)
                for network, tta in self.members]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The prediction's logits (N, 10); an ensemble's are the log of the mean probability."""
        logits = self.member_logits(images)
        return logits[0] if len(logits) == 1 else average_probabilities(logits)

    @property
    def test_time_augmentation(self) -> str:
        """"flip", "none", or per member where members differ: "flip; none"."""
        return views_text([tta for _, tta in self.members])


def views_text(members: Sequence[TestTimeAugmentation]) -> str:
    """The test-time augmentation of a network, or of an ensemble's members: "flip", "none",
    or per member where they differ: "flip; none"."""
    views = [str(tta) for tta in members]
    return views[0] if len(set(views)) == 1 else "; ".join(views)


def load_predictor(weights: Union[str, Sequence[str]], batch_size: int = 1024) -> Predictor:
    """A Predictor of one model.pt, or an ensemble of several, each with the test-time
    augmentation its run recorded (none where nothing is recorded)."""
    paths = (weights,) if isinstance(weights, (str, os.PathLike)) else tuple(weights)
    members = [read_weights(str(path)) for path in paths]
    return Predictor([(network, tta or NO_TTA) for network, tta in members], batch_size)


def predict(model: Union[Predictor, nn.Module], images: np.ndarray, batch_size: int = 1024,
            tta: Optional[TestTimeAugmentation] = None) -> np.ndarray:
    """Labels (N,) for uint8 RGB images (N, 32, 32, 3), normalized as in training, in eval mode.

    `model` is a Predictor (load_predictor('model.pt') reads the test-time augmentation its run
    measured with), or a network with the `tta` to use, which must then be given: a label made
    with other views than the reported accuracy's differs from it for no stated reason."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"predict expects uint8 images of shape (N, 32, 32, 3), got "
                         f"{images.dtype} {images.shape}")
    if not isinstance(model, Predictor):
        if tta is None:
            raise ValueError("predict(network, images) needs tta=: the test-time augmentation the "
                             "network's accuracy was measured with (TestTimeAugmentation() for "
                             "none, TestTimeAugmentation(flip=True) for the improved recipe); "
                             "or pass load_predictor('model.pt'), which reads it from the file")
        model = Predictor([(model, tta)], batch_size)
    return model.logits(to_nchw(images)).argmax(1).cpu().numpy()


def write_submission(path: str, ids: Sequence, labels: np.ndarray) -> None:
    """CSV with header ID,Labels, one row per id in the given order (written atomically)."""
    rows = [f"{identifier},{int(label)}" for identifier, label in zip(ids, labels)]
    atomic_write_text(path, "\n".join(["ID,Labels", *rows]) + "\n")
