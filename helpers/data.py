"""Data: the three sources, a class-balanced subset, the stratified validation split, checks.

Every source yields uint8 images of shape (N, 32, 32, 3), RGB, and int64 labels in CIFAR-10's
label order; every split loaded is fingerprinted and named by what it is (`provenance.py`). An
evaluation of given weights loads only the test images. Augmentation lives in `augment.py`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .checkpoints import atomic_write
from .config import RunConfig
from .errors import ExplainedError
from .launch import setting
from .provenance import SplitOrigin, describe, identify, pixel_fingerprint, file_digest, combine

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# Per-channel statistics of the official training images, used by every normalization here.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FOLDER_LAYOUT = "FOLDER/train/<class>/ and FOLDER/test/<class>/ holding .png or .jpg files"
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


NO_IMAGES = ImageSet(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64))


@dataclass(frozen=True)
class CifarData:
    """The splits of one run. `val` is empty when val_size is 0, `train` and `val` when the
    run only evaluates given weights. `origins` says what the loaded splits are."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    source: str
    origins: Dict[str, SplitOrigin] = field(default_factory=dict)
    classes: Tuple[str, ...] = CIFAR10_CLASSES

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    @property
    def description(self) -> str:
        """"CIFAR-10 official training images; official test images 0–999 (n = 1,000)"."""
        return describe(self.origins.get("train"), self.origins["test"], len(self.test))

    @property
    def test_name(self) -> str:
        """The test images in a few words, for figure titles."""
        return f"{self.origins['test'].name} (n = {len(self.test):,})"

    def to_dict(self) -> dict:
        """The `data` entry of metrics.json."""
        return {"description": self.description,
                **{split: origin.to_dict() for split, origin in self.origins.items()},
                "images": {split: len(getattr(self, split)) for split in ("train", "val", "test")}}


# --- sources ---------------------------------------------------------------------------------

ARCHIVE_NAME, ARCHIVE_BYTES = "cifar-10-python.tar.gz", 170_498_071  # as published
DOWNLOAD_STALL_S = 60  # seconds without a byte after which a download counts as failed


def check_download(data_dir: str) -> None:
    """Name what an interrupted download left damaged in data_dir. torchvision would take it
    for absent and download again, which offline fails with a message about the network."""
    from torchvision.datasets.cifar import CIFAR10  # its published file names and checksums
    from torchvision.datasets.utils import check_integrity

    archive = os.path.join(data_dir, CIFAR10.filename)
    folder = os.path.join(data_dir, CIFAR10.base_folder)
    damaged = [name for name, md5 in CIFAR10.train_list + CIFAR10.test_list
               if not check_integrity(os.path.join(folder, name), md5)]
    if not damaged or check_integrity(archive, CIFAR10.tgz_md5):
        return  # complete, or torchvision extracts the intact archive again
    if os.path.isfile(archive):
        raise DataError(f"{archive!r} is damaged or incomplete ({os.path.getsize(archive):,} of "
                        f"{ARCHIVE_BYTES:,} bytes, and not the published MD5 {CIFAR10.tgz_md5}), "
                        "probably from an interrupted download: delete it and run again to "
                        "download it anew")
    if os.path.isdir(folder):
        raise DataError(f"{folder!r} is damaged ({', '.join(damaged)} missing or not the "
                        "published MD5 checksum): delete the folder and run again to download "
                        "and extract it anew")


@contextlib.contextmanager
def network_time_limit(seconds: float) -> Iterator[None]:
    """Every socket opened inside waits at most `seconds` for a connection or for the next
    bytes. torchvision opens its download without a time limit, so a stalled connection (a
    proxy, a captive portal, a dropped Wi-Fi) would otherwise wait forever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def load_torchvision(data_dir: str, split: str) -> ImageSet:
    """One split of the official CIFAR-10 through torchvision, which downloads it into data_dir
    if absent and checks every file against its published MD5 checksum. A download that gets
    no bytes for DOWNLOAD_STALL_S seconds stops, and its partial archive is removed."""
    from torchvision.datasets import CIFAR10

    archive = os.path.join(data_dir, ARCHIVE_NAME)
    had_archive = os.path.exists(archive)
    try:
        with network_time_limit(DOWNLOAD_STALL_S):
            images = CIFAR10(root=data_dir, train=split == "train", download=True)
    except Exception as error:  # URLError, timeouts: all mean the same fix
        if not had_archive and os.path.exists(archive):
            os.remove(archive)  # a partial download, which the next run would take as damaged
        stalled = f"no answer for {DOWNLOAD_STALL_S:g} s: " if isinstance(error, TimeoutError) or \
            "timed out" in str(error) else ""
        raise DataError(
            f"could not download or read the official CIFAR-10 into data_dir={data_dir!r} "
            f"({stalled}{type(error).__name__}: {error}). Offline, put cifar-10-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html into {os.path.abspath(data_dir)}/ and "
            f"run again, or read image folders with {setting('data_source', 'folder')} and "
            f"{setting('data_dir', 'FOLDER')} ({FOLDER_LAYOUT}; the README's 'Without "
            "internet').") from None
    return ImageSet(np.asarray(images.data, dtype=np.uint8), np.asarray(images.targets, dtype=np.int64))


def list_image_folder(split_dir: str) -> Tuple[List[str], np.ndarray]:
    """Paths and labels of split_dir/<class>/*.{png,jpg}, class folders named as CIFAR-10's."""
    if not os.path.isdir(split_dir):
        data_dir = os.path.dirname(os.path.abspath(split_dir))
        above = os.path.dirname(data_dir)
        # data_dir=".../train" (or ".../test"), one folder too deep, is a common slip.
        hint = (f"; data_dir names the folder that holds train/ and test/: "
                f"{setting('data_dir', above)}?" if os.path.basename(data_dir) in ("train", "test")
                and os.path.isdir(os.path.join(above, os.path.basename(split_dir))) else "")
        raise DataError(f"folder {split_dir!r} is missing: data_source='folder' expects "
                        f"data_dir/train/<class>/ and data_dir/test/<class>/ image folders{hint}")
    found = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    unknown = sorted(set(found) - set(CIFAR10_CLASSES))
    missing = [c for c in CIFAR10_CLASSES if c not in found]
    if unknown:
        raise DataError(f"{split_dir!r} has unknown class folder(s) {unknown}; expected the ten "
                        f"CIFAR-10 classes {list(CIFAR10_CLASSES)}{_case_hint(unknown)}")
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


def _case_hint(folders: List[str]) -> str:
    """For class folders that differ from CIFAR-10's names only in case ('Airplane'): that
    names are matched exactly, and the renames that fix them."""
    renames = [f"{name!r} to {name.lower()!r}" for name in folders if name.lower() in CIFAR10_CLASSES]
    if not renames:
        return ""
    return (", whose names are matched exactly, in lower case: rename "
            + ", ".join(renames))


def read_image(path: str, label: int = 0) -> Tuple[np.ndarray, bytes]:
    """One 32x32 RGB image file as uint8 (32, 32, 3), and its digest for the folder's `files`
    fingerprint; anything but a 32x32 RGB image stops with the file named."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as file:
            content = file.read()
        with Image.open(io.BytesIO(content)) as image:
            image.load()
            mode, size = image.mode, image.size
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DataError(f"cannot read image {path!r}: {error}") from None
    if mode != "RGB" or size != (32, 32):
        raise DataError(f"image {path!r} is {size[0]}x{size[1]} {mode}; every image must be "
                        "32x32 RGB")
    return pixels, file_digest(label, content)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> Optional[float]:
    """The CPUs a container's quota allows (docker --cpus 1.5: 1.5), from cgroup v2's cpu.max or
    v1's cfs files; None where there is no quota or no cgroup file system."""
    try:
        with open(os.path.join(root, "cpu.max")) as file:
            quota, period = file.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as file:
            quota = int(file.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as file:
            period = int(file.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """The CPUs this process may use: those it may run on (taskset, a batch scheduler), or
    fewer where a container's quota allows fewer. os.cpu_count() counts the host's cores, so a
    1-CPU container on a 64-core host would start 64 workers."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def read_images(paths: List[str], labels: np.ndarray) -> Tuple[np.ndarray, str]:
    """Decode many files in parallel threads (PIL releases the GIL while decoding); returns
    the images and the `files` fingerprint of their bytes."""
    with ThreadPoolExecutor(max_workers=min(16, usable_cpus() * 2)) as pool:
        decoded = list(pool.map(read_image, paths, [int(label) for label in labels]))
    return np.stack([pixels for pixels, _ in decoded]), combine(digest for _, digest in decoded)


def listing_fingerprint(paths: List[str]) -> str:
    """A digest of the files' names, sizes and modification times: it changes when any image
    is added, removed, replaced or touched."""
    digest = hashlib.sha256()
    for path in paths:
        status = os.stat(path)
        # The name as the file system holds it: it need not be valid UTF-8 (an old archive's).
        digest.update(os.fsencode(path) + f"\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path(split_dir: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(split_dir)),
                        f".{os.path.basename(os.path.abspath(split_dir))}-images-cache.npz")


def read_cache(split_dir: str, listing: str) -> Optional[Tuple[ImageSet, str]]:
    """The split's decoded images and `files` fingerprint from the cache beside the folder, if
    it was made from these very files."""
    try:
        with np.load(cache_path(split_dir)) as cached:
            if str(cached["listing"]) != listing:
                return None
            return ImageSet(cached["images"], cached["labels"]), str(cached["files"])
    except (OSError, KeyError, ValueError):  # no cache yet, an old or a damaged one: decode again
        return None


def write_cache(split_dir: str, listing: str, images: ImageSet, files: str) -> Optional[str]:
    """Store the decoded split beside its folder (atomically); where it cannot be stored (a
    read-only folder, a full disk), why not. The run goes on either way."""
    try:
        atomic_write(cache_path(split_dir), lambda file: np.savez(
            file, images=images.images, labels=images.labels, listing=np.array(listing),
            files=np.array(files)))
        return None
    except OSError as error:
        return str(error) if isinstance(error, ExplainedError) else \
            f"the folder is not writable ({error.strerror})"


def load_split(split_dir: str) -> Tuple[ImageSet, str, str]:
    """One split of an image folder, its `files` fingerprint, and how it was read. The whole
    split is decoded once per machine and cached beside the folder as one uint8 array
    (decoding 60,000 JPEGs takes about 25 s on 2 cores; the cache about 1 s)."""
    paths, labels = list_image_folder(split_dir)
    listing = listing_fingerprint(paths)
    cached = read_cache(split_dir, listing)
    if cached is not None and np.array_equal(cached[0].labels, labels):
        return cached[0], cached[1], "cache"
    pixels, files = read_images(paths, labels)
    images = ImageSet(pixels, labels)
    not_cached = write_cache(split_dir, listing, images, files)
    how = f"decoded {len(paths)} files" + (f" (not cached: {not_cached})" if not_cached else ", cached")
    return images, files, how


def check_data_dir(data_dir: str) -> None:
    """A data_dir that is missing or empty, named with where it was looked for and the fix."""
    where = "" if os.path.isabs(data_dir) else f" (looked for at {os.path.abspath(data_dir)})"
    fix = (f"give the folder that holds them, {setting('data_dir', 'FOLDER')}, or download "
           f"the official CIFAR-10 instead with {setting('data_source', 'torchvision')}")
    if not os.path.isdir(data_dir):
        raise DataError(f"data_dir={data_dir!r} does not exist{where}. data_source='folder' "
                        f"reads image folders from it ({FOLDER_LAYOUT}): {fix}")
    if not os.listdir(data_dir):
        raise DataError(f"data_dir={data_dir!r} is empty{where}; data_source='folder' reads "
                        f"image folders from it ({FOLDER_LAYOUT}): {fix}")


def load_folder(data_dir: str, split: str) -> Tuple[ImageSet, str]:
    """One split of image folders data_dir/{train,test}/<class>/, through the decoded-image
    cache, and its `files` fingerprint."""
    check_data_dir(data_dir)
    images, files, _ = load_split(os.path.join(data_dir, split))
    return images, files


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


def balanced_counts(size: int) -> np.ndarray:
    """Images per class in a class-balanced subset of `size`: equal, the first classes taking
    one more where `size` is not a multiple of ten."""
    counts = np.full(10, size // 10)
    counts[:size % 10] += 1
    return counts


def largest_balanced_size(labels: np.ndarray) -> int:
    available = np.bincount(labels, minlength=10)
    return max(size for size in range(len(labels) + 1)
               if np.all(balanced_counts(size) <= available))


def _per_class_counts(labels: np.ndarray, total: int) -> np.ndarray:
    """Split `total` over the classes in proportion to their sizes (largest remainder)."""
    sizes = np.bincount(labels, minlength=10)
    exact = sizes * total / sizes.sum()
    counts = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[c] += 1
    return counts


def _pick(labels: np.ndarray, counts: np.ndarray,
          rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Sorted indices of counts[c] items of each class c: the first ones in the source's order,
    or, with `rng`, chosen at random."""
    members = [np.flatnonzero(labels == c) for c in range(len(counts))]
    if rng is not None:
        members = [rng.permutation(indices) for indices in members]
    return np.sort(np.concatenate([indices[:count] for indices, count in zip(members, counts)]))


def balanced_subset_indices(labels: np.ndarray, size: int, split: str = "train") -> np.ndarray:
    """A class-balanced subset of `size` items: the first size/10 images of each class in the
    source's order (the official order, which the image folders' file names keep): a rule a
    reader can state, which picks the same images from every copy of CIFAR-10 and does not hang
    on the luck of one random draw. A DataError where a class has too few images for it (a test
    folder of official test images 0–999 has 86 to 112 of each class)."""
    counts, available = balanced_counts(size), np.bincount(labels, minlength=10)
    short = np.flatnonzero(counts > available)
    if len(short):
        c = short[0]
        raise DataError(f"{split}_subset={size} asks for {counts[c]} images of class "
                        f"{CIFAR10_CLASSES[c]!r}, which has only {available[c]} here: a "
                        f"class-balanced subset can have at most {largest_balanced_size(labels):,} "
                        f"images; or use {split}_subset=None for all {len(labels):,}, "
                        "in their own class proportions")
    return _pick(labels, counts)


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train_indices, val_indices): val_size items stratified by class, deterministic in seed."""
    val = _pick(labels, _per_class_counts(labels, val_size), np.random.default_rng(seed))
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


def load_source_split(config: RunConfig, split: str) -> Tuple[ImageSet, SplitOrigin]:
    """One whole split ("train" or "test") of the configured source, and what it is."""
    fingerprints = {}
    if config.data_source == "torchvision":
        images = load_torchvision(config.data_dir, split)
    elif config.data_source == "folder":
        images, fingerprints["files"] = load_folder(config.data_dir, split)
    else:
        images = make_synthetic()[0 if split == "train" else 1]
    fingerprints["pixels"] = pixel_fingerprint(images.images, images.labels)
    return images, identify(split, config.data_source, fingerprints, len(images))


def load_data(config: RunConfig) -> CifarData:
    """Load the source's test split and, for training, its training split; take the
    class-balanced subsets, carve the validation split, name and check it all."""
    loaded, subsets = {}, {"train": config.train_subset, "test": config.test_subset}
    if config.data_source == "torchvision":
        check_download(config.data_dir)  # once: it reads every downloaded file
    for split in ("test",) if config.evaluate_only else ("train", "test"):
        images, origin = load_source_split(config, split)
        if subsets[split] is not None:
            check_subset_size(subsets[split], len(images), split)
            images = images.take(balanced_subset_indices(images.labels, subsets[split], split))
            origin = origin.with_subset(subsets[split])
        loaded[split] = images, origin
    train, val = NO_IMAGES, NO_IMAGES
    if not config.evaluate_only:
        images = loaded["train"][0]
        if config.val_size >= len(images):
            raise DataError(f"val_size={config.val_size} must be smaller than the {len(images)} "
                            "training images in use (after train_subset)")
        train_idx, val_idx = stratified_split(images.labels, config.val_size, config.seed)
        train, val = images.take(train_idx), images.take(val_idx)
    data = CifarData(train, val, loaded["test"][0], config.data_source,
                     {split: origin for split, (_, origin) in loaded.items()})
    for name in ("train", "val", "test"):
        check_integrity(name, getattr(data, name))
    if len(data.test) == 0:
        raise DataError("the test split is empty")
    return data


def summarize(data: CifarData) -> str:
    """What the data is (name, size before subsets, fingerprint), then the counts per split and
    class, image shape and label range, as a small text table."""
    lines = [f"data: {data.description}"]
    for split, origin in data.origins.items():
        known = "a known copy" if origin.known else "not a known copy"
        lines.append(f"  {split}: {origin.name} ({known}; {origin.images:,} images in the source, "
                     f"pixels fingerprint {origin.fingerprints['pixels'][:12]})")
    splits = [s for s in ("train", "val", "test") if len(getattr(data, s)) or s == "test"]
    lines.append(f"{'class':<12}" + "".join(f"{s:>8}" for s in splits))
    counts = {s: np.bincount(getattr(data, s).labels, minlength=10) for s in splits}
    for c, name in enumerate(data.classes):
        lines.append(f"{name:<12}" + "".join(f"{counts[s][c]:>8}" for s in splits))
    lines.append(f"{'total':<12}" + "".join(f"{len(getattr(data, s)):>8}" for s in splits))
    labels = np.concatenate([data.train.labels, data.test.labels])
    lines.append(f"images {tuple(data.test.images.shape[1:])} uint8, labels "
                 f"{labels.min()}..{labels.max()}, source {data.source!r}")
    if data.is_synthetic:
        lines.insert(0, "*** SYNTHETIC DATA: not CIFAR-10; accuracies mean nothing ***")
    return "\n".join(lines)
