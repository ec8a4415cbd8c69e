"""The calibration images of int8 quantization (helpers/options/quantization.py): training
images, class-balanced, the same for every seed; never test images."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..data import CifarData, DataError, ImageSet, load_source_split, stratified_split

# The class-balanced calibration images of int8 quantization are part of the data, not of the
# run: the same for every seed (the value the subsets were once drawn with, so that
# calibrations stay as measured).
CALIBRATION_SEED = 20250401


def calibration_set(config, data: CifarData) -> Tuple[ImageSet, str]:
    """(images, what they are): `calibration_images` training images for int8 quantization,
    stratified by class and the same for every seed; from the run's training split, or, in an
    evaluation (which loads no training images otherwise), from the source's training images."""
    if len(data.train):
        images, name = data.train, f"{data.origins['train'].name}, the run's training split"
    else:
        images, origin, _ = load_source_split(config, "train")
        name = origin.name
    wanted = config.calibration_images
    if wanted > len(images):
        raise DataError(f"calibration_images={wanted} asks for more than the {len(images):,} "
                        f"training images at hand ({name}): set calibration_images to at most "
                        f"{len(images):,}")
    # Stratified by class like the validation split, with a fixed seed.
    chosen = stratified_split(images.labels, wanted, CALIBRATION_SEED)[1] if wanted < len(images) \
        else np.arange(len(images))
    return images.take(chosen), f"{wanted:,} of {name}"
