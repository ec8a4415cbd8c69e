"""The JPEG mirror's copies of official test images 0–999, as image folders of their own.

    python scripts/mirror_test_sample.py /tmp/cifar10-official /tmp/cifar10-jpeg data/cifar10-jpeg-0-999

Official test images 0–999 are the only official test pixels here; the mirror holds all 10,000 as
JPEG. Within a class, both name files by the image's rank in the official order, so the mirror's
copies of images 0–999 are, in each class, its first as many files as the official folder holds
of that class. DEST/test/<class>/ gets links to them (and DEST/train a link to the mirror's
train/), so that one set of weights can be evaluated on the same 1,000 images in both copies.
"""
from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official", help="image folders of the official pixels (test/ holds images 0-999)")
    parser.add_argument("mirror", help="image folders of the JPEG mirror")
    parser.add_argument("dest")
    args = parser.parse_args()
    official, mirror = os.path.abspath(args.official), os.path.abspath(args.mirror)
    for name in sorted(os.listdir(os.path.join(official, "test"))):
        count = len(os.listdir(os.path.join(official, "test", name)))
        folder = os.path.join(args.dest, "test", name)
        os.makedirs(folder, exist_ok=True)
        for file in sorted(os.listdir(os.path.join(mirror, "test", name)))[:count]:
            os.symlink(os.path.join(mirror, "test", name, file), os.path.join(folder, file))
    os.symlink(os.path.join(mirror, "train"), os.path.join(args.dest, "train"))
    print(f"{args.dest}: the mirror's copies of official test images 0-999")


if __name__ == "__main__":
    main()
