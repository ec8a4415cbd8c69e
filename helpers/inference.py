"""Inference: predict() on raw uint8 images, and the Kaggle submission from an unlabeled pickle.

The test pickle comes from outside the project, and pickle.load runs whatever code a pickle
names. It is therefore read with a restricted unpickler that can build only plain containers,
bytes, strings, numbers and numpy arrays.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Sequence, Tuple

import numpy as np
from torch import nn

from .augment import to_nchw
from .checkpoints import atomic_write_text
from .training import predict_logits


class SubmissionError(ValueError):
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


def predict(model: nn.Module, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Labels (N,) for uint8 RGB images (N, 32, 32, 3): normalized as in training, eval mode."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"predict expects uint8 images of shape (N, 32, 32, 3), got "
                         f"{images.dtype} {images.shape}")
    return predict_logits(model, to_nchw(images), batch_size).argmax(1).cpu().numpy()


def write_submission(path: str, ids: Sequence, labels: np.ndarray) -> None:
    """CSV with header ID,Labels, one row per id in the given order (written atomically)."""
    rows = [f"{identifier},{int(label)}" for identifier, label in zip(ids, labels)]
    atomic_write_text(path, "\n".join(["ID,Labels", *rows]) + "\n")
