"""Fingerprints of image folders, and what the project recognises them as.

    python scripts/fingerprint_data.py /tmp/cifar10-official /tmp/cifar10-jpeg

For each folder's train/ and test/ split: the number of images, the `pixels` and `files`
fingerprints (helpers/data.py) and the name the project gives it. The fingerprints in
provenance.KNOWN_SETS were made with this script from the folders that
../shared/data/cifar10-official/unpack.py and ../shared/data/unpack.py write.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helpers.data import load_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dirs", nargs="+", help="folders holding train/<class>/ and test/<class>/")
    args = parser.parse_args()
    for data_dir in args.data_dirs:
        for split in ("train", "test"):
            if not os.path.isdir(os.path.join(data_dir, split)):
                continue
            images, origin, _ = load_folder(data_dir, split)
            print(f"{os.path.join(data_dir, split)}: {len(images):,} images, recognised as "
                  f"{origin.name!r}")
            for kind, value in origin.fingerprints.items():
                print(f"  {kind:<7}{value}")


if __name__ == "__main__":
    main()
