"""Data: the three sources, a class-balanced subset, the stratified validation split, checks.

Every source yields uint8 images of shape (N, 32, 32, 3), RGB, and int64 labels in CIFAR-10's
label order. Augmentation lives in `augment.py`.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .checkpoints import atomic_write
from .config import RunConfig
from .errors import ExplainedError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# Per-channel statistics of the official training images, used by every normalization here.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# The subset is part of the data, not of the run: the same images for every seed.
SUBSET_SEED = 20250401
SYNTHETIC_TRAIN_PER_CLASS, SYNTHETIC_TEST_PER_CLASS = 500, 50


class DataError(ExplainedError, ValueError):
    """The data cannot be used; the message names the file, folder or parameter and the fix."""


@dataclass(frozen=True)
class ImageSet:
    """Images (N, 32, 32, 3) uint8 RGB with their int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> "ImageSet":
        return ImageSet(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class CifarData:
    """The splits of one run. `val` is empty when val_size is 0."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    source: str
    classes: Tuple[str, ...] = CIFAR10_CLASSES

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"


# --- sources ---------------------------------------------------------------------------------

def load_torchvision(data_dir: str) -> Tuple[ImageSet, ImageSet]:
    """The official CIFAR-10 through torchvision, downloaded into data_dir if absent."""
    from torchvision.datasets import CIFAR10

    try:
        splits = [CIFAR10(root=data_dir, train=train, download=True) for train in (True, False)]
    except Exception as error:  # URLError, timeouts, a damaged archive: all mean the same fix
        raise DataError(
            f"could not download or read the official CIFAR-10 into data_dir={data_dir!r} "
            f"({type(error).__name__}: {error}). Offline, put cifar-10-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html into {os.path.abspath(data_dir)}/ and "
            "run again, or read image folders with data_source='folder' "
            "(data_dir/train/<class>/ and data_dir/test/<class>/ holding .png or .jpg files).") from None
    return tuple(ImageSet(np.asarray(s.data, dtype=np.uint8), np.asarray(s.targets, dtype=np.int64))
                 for s in splits)


def list_image_folder(split_dir: str) -> Tuple[List[str], np.ndarray]:
    """Paths and labels of split_dir/<class>/*.{png,jpg}, class folders named as CIFAR-10's."""
    if not os.path.isdir(split_dir):
        raise DataError(f"folder {split_dir!r} is missing: data_source='folder' expects "
                        "data_dir/train/<class>/ and data_dir/test/<class>/ image folders")
    found = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    unknown = sorted(set(found) - set(CIFAR10_CLASSES))
    missing = [c for c in CIFAR10_CLASSES if c not in found]
    if unknown:
        raise DataError(f"{split_dir!r} has unknown class folder(s) {unknown}; expected the ten "
                        f"CIFAR-10 classes {list(CIFAR10_CLASSES)}")
    if missing:
        raise DataError(f"{split_dir!r} is missing class folder(s) {missing}")
    paths, labels = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        folder = os.path.join(split_dir, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DataError(f"class folder {folder!r} holds no .png or .jpg images")
        paths += [os.path.join(folder, f) for f in files]
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def read_image(path: str) -> np.ndarray:
    """One 32x32 RGB image file as uint8 (32, 32, 3); anything else stops with the file named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DataError(f"cannot read image {path!r}: {error}") from None
    if mode != "RGB" or size != (32, 32):
        raise DataError(f"image {path!r} is {size[0]}x{size[1]} {mode}; every image must be "
                        "32x32 RGB")
    return pixels


def read_images(paths: List[str]) -> np.ndarray:
    """Decode many files in parallel threads (PIL releases the GIL while decoding)."""
    if not paths:
        return np.zeros((0, 32, 32, 3), np.uint8)
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
        return np.stack(list(pool.map(read_image, paths)))


def folder_fingerprint(paths: List[str]) -> str:
    """A digest of the files' names, sizes and modification times: it changes when any image
    is added, removed, replaced or touched."""
    digest = hashlib.sha256()
    for path in paths:
        status = os.stat(path)
        digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path(split_dir: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(split_dir)),
                        f".{os.path.basename(os.path.abspath(split_dir))}-images-cache.npz")


def read_cache(split_dir: str, fingerprint: str) -> Optional[ImageSet]:
    """The split's decoded images from the cache beside the folder, if it matches the files."""
    try:
        with np.load(cache_path(split_dir)) as cached:
            if str(cached["fingerprint"]) != fingerprint:
                return None
            return ImageSet(cached["images"], cached["labels"])
    except (OSError, KeyError, ValueError):  # no cache yet, or a damaged one: decode again
        return None


def write_cache(split_dir: str, fingerprint: str, images: ImageSet) -> bool:
    """Store the decoded split beside its folder (atomically); False where it is read-only."""
    try:
        atomic_write(cache_path(split_dir), lambda file: np.savez(
            file, images=images.images, labels=images.labels, fingerprint=np.array(fingerprint)))
        return True
    except OSError:
        return False


def load_split(split_dir: str, subset: Optional[int]) -> Tuple[ImageSet, str]:
    """One split of an image folder, and how it was read. The whole split is decoded once per
    machine and cached beside the folder as one uint8 array (decoding 60,000 JPEGs takes about
    25 s on 2 cores; the cache about 1 s); a subset without a cache decodes only its files."""
    paths, labels = list_image_folder(split_dir)
    keep = None
    if subset is not None:
        check_subset_size(subset, len(labels), os.path.basename(split_dir))
        keep = balanced_subset_indices(labels, subset)
    fingerprint = folder_fingerprint(paths)
    cached = read_cache(split_dir, fingerprint)
    if cached is not None and np.array_equal(cached.labels, labels):
        return (cached if keep is None else cached.take(keep)), "cache"
    if keep is not None:
        return ImageSet(read_images([paths[i] for i in keep]), labels[keep]), f"decoded {len(keep)} files"
    images = ImageSet(read_images(paths), labels)
    how = f"decoded {len(paths)} files" + (", cached" if write_cache(split_dir, fingerprint, images)
                                           else " (folder read-only: not cached)")
    return images, how


def load_folder(data_dir: str, train_subset: Optional[int],
                test_subset: Optional[int] = None) -> Tuple[ImageSet, ImageSet]:
    """Image folders data_dir/{train,test}/<class>/, through the decoded-image cache."""
    if not os.path.isdir(data_dir):
        raise DataError(f"data_dir={data_dir!r} does not exist (data_source='folder')")
    if not os.listdir(data_dir):
        raise DataError(f"data_dir={data_dir!r} is empty; expected train/ and test/ folders")
    train, _ = load_split(os.path.join(data_dir, "train"), train_subset)
    test, _ = load_split(os.path.join(data_dir, "test"), test_subset)
    return train, test


def make_synthetic(train_per_class: int = SYNTHETIC_TRAIN_PER_CLASS,
                   test_per_class: int = SYNTHETIC_TEST_PER_CLASS) -> Tuple[ImageSet, ImageSet]:
    """SYNTHETIC images for smoke runs and tests: each class a colour and stripe pattern + noise."""
    rng = np.random.default_rng(0)
    colours = rng.uniform(40, 215, size=(10, 3))
    rows, cols = np.mgrid[0:32, 0:32]

    def draw(per_class: int) -> ImageSet:
        labels = np.repeat(np.arange(10), per_class)
        angle = labels[:, None, None] * np.pi / 10
        stripes = np.sin((rows * np.cos(angle) + cols * np.sin(angle)) * 0.6)
        pixels = colours[labels][:, None, None, :] + 30 * stripes[..., None]
        pixels += rng.normal(0, 20, size=pixels.shape)
        return ImageSet(np.clip(pixels, 0, 255).astype(np.uint8), labels.astype(np.int64))

    return draw(train_per_class), draw(test_per_class)


# --- subset and split ------------------------------------------------------------------------

def check_subset_size(subset: int, available: int, split: str = "train") -> None:
    if not 10 <= subset <= available:
        raise DataError(f"{split}_subset={subset} must be between 10 and the {available} "
                        f"{'training' if split == 'train' else 'test'} images available")


def _per_class_counts(labels: np.ndarray, total: int) -> np.ndarray:
    """Split `total` over the classes in proportion to their sizes (largest remainder)."""
    sizes = np.bincount(labels, minlength=10)
    exact = sizes * total / sizes.sum()
    counts = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[c] += 1
    return counts


def _stratified_pick(labels: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `total` items, spread over the classes in proportion, chosen at random."""
    picked = [rng.permutation(np.flatnonzero(labels == c))[:count]
              for c, count in enumerate(_per_class_counts(labels, total))]
    return np.sort(np.concatenate(picked))


def balanced_subset_indices(labels: np.ndarray, size: int) -> np.ndarray:
    """A class-balanced subset of `size` items, the same for every seed."""
    return _stratified_pick(labels, size, np.random.default_rng(SUBSET_SEED))


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train_indices, val_indices): val_size items stratified by class, deterministic in seed."""
    val = _stratified_pick(labels, val_size, np.random.default_rng(seed))
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


# --- the whole stage -------------------------------------------------------------------------

def check_integrity(name: str, images: ImageSet) -> None:
    """Stop on data no model could learn from: wrong shapes, dtypes or labels outside 0-9."""
    if images.images.dtype != np.uint8 or images.images.shape[1:] != (32, 32, 3):
        raise DataError(f"{name} images are {images.images.dtype} {images.images.shape}; "
                        "expected uint8 (N, 32, 32, 3)")
    if len(images.images) != len(images.labels):
        raise DataError(f"{name} has {len(images.images)} images but {len(images.labels)} labels")
    if len(images.labels) and (images.labels.min() < 0 or images.labels.max() > 9):
        raise DataError(f"{name} labels span {images.labels.min()}..{images.labels.max()}; "
                        "CIFAR-10 labels are 0..9")


def load_data(config: RunConfig) -> CifarData:
    """Load the source, take the training subset, carve the validation split, check it all."""
    if config.data_source == "torchvision":
        train, test = load_torchvision(config.data_dir)
    elif config.data_source == "folder":
        train, test = load_folder(config.data_dir, config.train_subset, config.test_subset)
    else:
        train, test = make_synthetic()
    if config.data_source != "folder":  # the folder source takes its subsets before decoding
        if config.train_subset is not None:
            check_subset_size(config.train_subset, len(train))
            train = train.take(balanced_subset_indices(train.labels, config.train_subset))
        if config.test_subset is not None:
            check_subset_size(config.test_subset, len(test), "test")
            test = test.take(balanced_subset_indices(test.labels, config.test_subset))
    if config.val_size >= len(train):
        raise DataError(f"val_size={config.val_size} must be smaller than the {len(train)} "
                        "training images in use (after train_subset)")
    train_idx, val_idx = stratified_split(train.labels, config.val_size, config.seed)
    data = CifarData(train.take(train_idx), train.take(val_idx), test, config.data_source)
    for name in ("train", "val", "test"):
        check_integrity(name, getattr(data, name))
    if len(data.test) == 0:
        raise DataError("the test split is empty")
    return data


def summarize(data: CifarData) -> str:
    """Counts per split and class, image shape and label range, as a small text table."""
    header = f"{'class':<12}" + "".join(f"{s:>8}" for s in ("train", "val", "test"))
    lines = [header]
    counts = {s: np.bincount(getattr(data, s).labels, minlength=10) for s in ("train", "val", "test")}
    for c, name in enumerate(data.classes):
        lines.append(f"{name:<12}" + "".join(f"{counts[s][c]:>8}" for s in counts))
    lines.append(f"{'total':<12}" + "".join(f"{len(getattr(data, s)):>8}" for s in counts))
    labels = np.concatenate([data.train.labels, data.test.labels])
    lines.append(f"images {tuple(data.train.images.shape[1:])} uint8, labels "
                 f"{labels.min()}..{labels.max()}, source {data.source!r}")
    if data.is_synthetic:
        lines.insert(0, "*** SYNTHETIC DATA: not CIFAR-10; accuracies mean nothing ***")
    return "\n".join(lines)
