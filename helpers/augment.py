"""Augmentation, two ways with the same distributions.

* `per_image_transform`: torchvision transforms on one PIL image at a time, run by DataLoader
  workers (pipeline="dataloader", the literal pipeline of the reference report).
* `augment_batch`: the same operations on a whole uint8 batch at once on the training device
  (pipeline="fast"). Random parameters are drawn for a whole epoch up front from a CPU generator
  seeded by (seed, epoch), so a batch is the same on CPU and GPU, on any rank, and after a resume.
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .data import CIFAR10_MEAN, CIFAR10_STD
from .recipes import Augmentation

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator for one epoch: epochs differ, reruns and resumed runs repeat exactly."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


# --- per-image pipeline (DataLoader) ----------------------------------------------------------

class Cutout:
    """Zero one size x size square at a uniformly drawn centre, clipped at the border."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        centre = torch.randint(0, 32, (2,))
        return cutout(image[None], centre[None, 0], centre[None, 1], self.size)[0]


def per_image_transform(augmentation: Augmentation):
    """torchvision preset for one PIL image: crop, flip, rotation, jitter, normalize, cutout."""
    from torchvision import transforms as T

    a = augmentation
    steps = []
    if a.crop_padding:
        steps.append(T.RandomCrop(32, padding=a.crop_padding))
    if a.flip:
        steps.append(T.RandomHorizontalFlip())
    if a.rotation_degrees:
        steps.append(T.RandomRotation(a.rotation_degrees))
    if a.brightness or a.contrast or a.saturation:
        steps.append(T.ColorJitter(a.brightness, a.contrast, a.saturation))
    steps += [T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    if a.cutout_size:
        steps.append(Cutout(a.cutout_size))
    return T.Compose(steps)


# --- batched operations -----------------------------------------------------------------------

def _jitter_range(strength: float) -> Tuple[float, float]:
    return max(0.0, 1.0 - strength), 1.0 + strength


def draw_parameters(count: int, augmentation: Augmentation,
                    generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """Per-image random parameters for `count` images, drawn on the CPU."""
    a = augmentation

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    pad = a.crop_padding
    return {
        "crop_y": torch.randint(0, 2 * pad + 1, (count,), generator=generator),
        "crop_x": torch.randint(0, 2 * pad + 1, (count,), generator=generator),
        "flip": torch.rand(count, generator=generator) < (0.5 if a.flip else 0.0),
        "angle": uniform(-a.rotation_degrees, a.rotation_degrees),
        "brightness": uniform(*_jitter_range(a.brightness)),
        "contrast": uniform(*_jitter_range(a.contrast)),
        "saturation": uniform(*_jitter_range(a.saturation)),
        # Like ColorJitter, apply the three adjustments in a random order per image.
        "jitter_order": torch.argsort(torch.rand(count, 3, generator=generator), dim=1),
        "cutout_y": torch.randint(0, 32, (count,), generator=generator),
        "cutout_x": torch.randint(0, 32, (count,), generator=generator),
    }


def random_crop(images: torch.Tensor, crop_y: torch.Tensor, crop_x: torch.Tensor,
                padding: int) -> torch.Tensor:
    """32x32 windows at per-image offsets of the zero-padded batch (N, C, 32, 32)."""
    if padding == 0:
        return images
    padded = F.pad(images, (padding,) * 4)
    n, c, h, w = images.shape
    rows = (crop_y[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (crop_x[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre, nearest pixel, zero fill (as RandomRotation)."""
    radians = degrees.to(images.device, torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros",
                         align_corners=False).to(images.dtype)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(GRAY_WEIGHTS, device=images.device, dtype=images.dtype)
    return (images * weights[None, :, None, None]).sum(1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor[:, None, None, None]
    return (factor * images + (1 - factor) * other).clamp_(0, 1)


def color_jitter(images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                 saturation: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation on floats in [0, 1], in each image's own order."""
    for step in range(3):
        adjusted = (
            _blend(images, torch.zeros_like(images), brightness),
            _blend(images, _grayscale(images).mean((2, 3), keepdim=True), contrast),
            _blend(images, _grayscale(images), saturation),
        )
        which = order[:, step][:, None, None, None]
        images = torch.where(which == 0, adjusted[0], torch.where(which == 1, adjusted[1], adjusted[2]))
    return images


def cutout(images: torch.Tensor, centre_y: torch.Tensor, centre_x: torch.Tensor,
           size: int) -> torch.Tensor:
    """Zero a size x size square around each image's centre point (clipped at the border)."""
    low_y, low_x = centre_y - size // 2, centre_x - size // 2
    rows = torch.arange(images.shape[-2], device=images.device)
    cols = torch.arange(images.shape[-1], device=images.device)
    inside_y = (rows[None] >= low_y[:, None]) & (rows[None] < low_y[:, None] + size)
    inside_x = (cols[None] >= low_x[:, None]) & (cols[None] < low_x[:, None] + size)
    mask = inside_y[:, :, None] & inside_x[:, None, :]
    return images.masked_fill(mask[:, None], 0.0)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] -> zero mean, unit variance per channel (CIFAR-10 statistics)."""
    mean = torch.tensor(CIFAR10_MEAN, device=images.device)[None, :, None, None]
    std = torch.tensor(CIFAR10_STD, device=images.device)[None, :, None, None]
    return (images - mean) / std


def augment_batch(images: torch.Tensor, parameters: Dict[str, torch.Tensor],
                  augmentation: Augmentation) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) on any device -> augmented, normalized float32 batch."""
    a = augmentation
    p = {name: value.to(images.device, non_blocking=True) for name, value in parameters.items()}
    images = random_crop(images, p["crop_y"], p["crop_x"], a.crop_padding)
    if a.flip:
        images = torch.where(p["flip"][:, None, None, None], images.flip(-1), images)
    if a.rotation_degrees:
        images = rotate(images, p["angle"])
    images = images.float() / 255
    if a.brightness or a.contrast or a.saturation:
        images = color_jitter(images, p["brightness"], p["contrast"], p["saturation"],
                              p["jitter_order"])
    images = normalize(images)
    if a.cutout_size:
        images = cutout(images, p["cutout_y"], p["cutout_x"], a.cutout_size)
    return images


# --- batches of an epoch ----------------------------------------------------------------------

def epoch_batches(num_items: int, batch_size: int, generator: torch.Generator, rank: int = 0,
                  world_size: int = 1) -> List[torch.Tensor]:
    """This rank's index chunk of each global batch of one shuffled epoch.

    Every rank draws the same permutation and takes a disjoint, equal slice of each global batch,
    so N ranks together see exactly what one process with the same batch size sees. With several
    ranks the last partial batch is dropped, since it cannot be split evenly.
    """
    order = torch.randperm(num_items, generator=generator)
    global_batches = list(order.split(batch_size))
    if world_size > 1 and len(global_batches[-1]) < batch_size:
        global_batches.pop()
    return [batch.chunk(world_size)[rank] if world_size > 1 else batch
            for batch in global_batches]


def fast_batches(images: torch.Tensor, labels: torch.Tensor, augmentation: Augmentation,
                 batch_size: int, generator: torch.Generator, rank: int = 0,
                 world_size: int = 1) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of augmented batches from uint8 images (N, 3, 32, 32) kept on the device."""
    batches = epoch_batches(len(labels), batch_size, generator, rank, world_size)
    # Drawn for every image of the epoch (all ranks alike), then sliced per batch.
    parameters = draw_parameters(len(labels), augmentation, generator)
    for indices in batches:
        batch_parameters = {name: value[indices] for name, value in parameters.items()}
        on_device = indices.to(images.device)
        yield augment_batch(images[on_device], batch_parameters, augmentation), labels[on_device]


class PerImageDataset(torch.utils.data.Dataset):
    """uint8 (N, 32, 32, 3) images through a per-image PIL transform, like torchvision's CIFAR10."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def dataloader_batches(images: np.ndarray, labels: np.ndarray, augmentation: Augmentation,
                       batch_size: int, generator: torch.Generator, rank: int = 0,
                       world_size: int = 1, num_workers: int = 0,
                       pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """One epoch through per-image torchvision transforms in DataLoader workers."""
    dataset = PerImageDataset(images, labels, per_image_transform(augmentation))
    index_batches = [b.tolist() for b in epoch_batches(len(labels), batch_size, generator,
                                                       rank, world_size)]
    # The loader's own generator seeds the workers' transforms: the same for a given epoch
    # however often the run is restarted.
    worker_seeds = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    return torch.utils.data.DataLoader(dataset, batch_sampler=index_batches, num_workers=num_workers,
                                       pin_memory=pin_memory, generator=worker_seeds)


def to_device_tensors(images: np.ndarray, labels: np.ndarray,
                      device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 32, 32, 3) numpy -> uint8 (N, 3, 32, 32) and int64 labels on `device`."""
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    return pixels.to(device), torch.from_numpy(labels).to(device)
