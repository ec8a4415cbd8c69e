"""Shared fixtures: tiny data made by the tests themselves, never the real CIFAR-10."""
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helpers.data import CIFAR10_CLASSES  # noqa: E402


def write_image_folder(root, per_class=3, splits=("train", "test"), extension="png", size=32):
    """root/<split>/<class>/NNNN.<extension>: small random RGB images; returns root."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                pixels[0, 0] = label  # lets a test check which class an image came from
                Image.fromarray(pixels).save(os.path.join(folder, f"{index:04d}.{extension}"))
    return str(root)


@pytest.fixture(autouse=True)
def own_cache_folder(tmp_path_factory, monkeypatch):
    """Image folders' fingerprints are remembered in a cache folder of each test's own, never
    in the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "images", per_class=6)


@pytest.fixture
def run_dirs(tmp_path):
    """output_dir and figures_dir parameters inside the test's temporary folder."""
    return {"output_dir": str(tmp_path / "outputs"), "figures_dir": str(tmp_path / "figures")}
