"""Augmentation, two ways with the same distributions.

* `per_image_transform`: torchvision transforms on one PIL image at a time, run by DataLoader
  workers (pipeline="dataloader", the literal pipeline of the reference report).
* `augment_batch`: the same operations on a whole uint8 batch at once on the training device
  (pipeline="fast"). Random parameters are drawn for a whole epoch up front from a CPU generator
  seeded by (seed, epoch), so a batch is the same on CPU and GPU, on any rank, and after a resume.
"""
from __future__ import annotations

import functools
import math
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .recipes import Augmentation

# Per-channel statistics of the official training images, used by every normalization here.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def epoch_seed(seed: int, epoch: int) -> int:
    """The random seed of one epoch of a run: epochs differ, reruns and resumed runs repeat."""
    return seed * 1_000_003 + epoch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator for one epoch, seeded by epoch_seed."""
    return torch.Generator().manual_seed(epoch_seed(seed, epoch))


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
    parameters = {
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
    if mixes(a):  # drawn only when on, so the other recipes' random streams stay as they were
        parameters.update(draw_mixing(count, a, generator))
    return parameters


def mixes(augmentation: Augmentation) -> bool:
    return bool(augmentation.mixup_alpha or augmentation.cutmix_alpha)


def draw_mixing(count: int, augmentation: Augmentation,
                generator: Optional[torch.Generator]) -> Dict[str, torch.Tensor]:
    """Per image: its weight in the mix, whether it is CutMix'ed, and the box centre."""
    a = augmentation
    # torch has no seeded Beta sampler; numpy's, seeded from the epoch's generator, repeats too.
    beta = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator))).beta
    mixup = beta(a.mixup_alpha, a.mixup_alpha, count) if a.mixup_alpha else np.ones(count)
    cutmix = beta(a.cutmix_alpha, a.cutmix_alpha, count) if a.cutmix_alpha else np.ones(count)
    use_cutmix = torch.rand(count, generator=generator) < (
        0.5 if a.mixup_alpha and a.cutmix_alpha else float(bool(a.cutmix_alpha)))
    return {"mix_weight": torch.from_numpy(np.where(use_cutmix.numpy(), cutmix, mixup)).float(),
            "mix_cutmix": use_cutmix,
            "mix_y": torch.randint(0, 32, (count,), generator=generator),
            "mix_x": torch.randint(0, 32, (count,), generator=generator)}


def source_pixels(crop_y: torch.Tensor, crop_x: torch.Tensor, flip: torch.Tensor,
                  degrees: torch.Tensor, padding: int, size: int = 32) -> torch.Tensor:
    """For crop -> flip -> rotation, the source of every output pixel, as one index map.

    Returns (N, size*size) indices into each image zero-padded by `padding` pixels plus one
    extra zero pixel at the end, which is where pixels outside the rotated frame read from.
    Rotation is about the centre, to the nearest pixel, as torchvision's RandomRotation.
    """
    device = crop_y.device
    radians = degrees.to(device, torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(radians)[:, None], torch.sin(radians)[:, None]
    mirror = 1.0 - 2.0 * flip.to(device, torch.float32)[:, None]  # a flip negates x
    centre = size / 2 - 0.5
    steps = torch.arange(size, device=device, dtype=torch.float32) - centre
    x, y = steps.repeat(size)[None], steps.repeat_interleave(size)[None]  # output pixels
    # The source pixel of output pixel (x, y) in the cropped, flipped image (relative to the
    # centre): rotate, then negate x where the image is flipped.
    source = torch.stack([torch.addcmul(mirror * cos * x, -mirror * sin, y),
                          torch.addcmul(sin * x, cos, y)], 1).add_(centre).round_()
    outside = (source - centre).abs_().amax(1) > size / 2
    padded = size + 2 * padding
    # Crop: the window starts at (crop_y, crop_x) in the padded image.
    row, col = source[:, 1] + crop_y.to(device)[:, None], source[:, 0] + crop_x.to(device)[:, None]
    flat = (row * padded + col).clamp_(0, padded * padded - 1).masked_fill_(outside, padded * padded)
    return flat.long()


def crop_flip_rotate(images: torch.Tensor, crop_y: torch.Tensor, crop_x: torch.Tensor,
                     flip: torch.Tensor, degrees: torch.Tensor, padding: int) -> torch.Tensor:
    """Padded random crop, horizontal flip and rotation of a batch (N, C, H, W) in one gather."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4).reshape(n, c, -1)
    padded = F.pad(padded, (0, 1))  # the extra zero pixel that out-of-frame pixels read
    index = source_pixels(crop_y, crop_x, flip, degrees, padding, w)
    return padded.gather(2, index[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    red, green, blue = images.unbind(1)
    return (GRAY_WEIGHTS[0] * red + GRAY_WEIGHTS[1] * green + GRAY_WEIGHTS[2] * blue)[:, None]


def color_jitter(images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                 saturation: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation on floats in [0, 1], in each image's own order.
    Works in place on `images` and returns it.

    Each adjustment blends the image with something: black (brightness), its mean grey level
    (contrast) or its own greyscale (saturation), then clips to [0, 1] as torchvision does. So
    each of the three steps is one blend, with the factor and blend target of that image's op.
    """
    factors = torch.stack([brightness, contrast, saturation], 1).to(images.device)
    order = order.to(images.device)
    for step in range(3):
        op = order[:, step, None]
        factor = factors.gather(1, op)[:, :, None, None]
        gray = _grayscale(images)
        use_mean = (op == 1).to(images.dtype)[:, :, None, None]
        use_gray = (op == 2).to(images.dtype)[:, :, None, None]
        target = (use_gray * gray + use_mean * gray.mean((2, 3), keepdim=True)) * (1 - factor)
        # In place: a fresh 3 MB tensor per operation costs as much as the arithmetic on CPU.
        images.mul_(factor).add_(target).clamp_(0, 1)
    return images


def cutout(images: torch.Tensor, centre_y: torch.Tensor, centre_x: torch.Tensor,
           size: int) -> torch.Tensor:
    """Zero a size x size square around each image's centre point (clipped at the border)."""
    low_y, low_x = centre_y - size // 2, centre_x - size // 2
    mask = _square_mask(images.shape[-2], images.shape[-1], low_y, low_y + size, low_x,
                        low_x + size, images.device)
    return images.masked_fill(mask[:, None], 0.0)


def _square_mask(height: int, width: int, low_y: torch.Tensor, high_y: torch.Tensor,
                 low_x: torch.Tensor, high_x: torch.Tensor, device) -> torch.Tensor:
    """(N, H, W) booleans: True inside each image's rows [low_y, high_y) and columns
    [low_x, high_x)."""
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    inside_y = (rows[None] >= low_y[:, None]) & (rows[None] < high_y[:, None])
    inside_x = (cols[None] >= low_x[:, None]) & (cols[None] < high_x[:, None])
    return inside_y[:, :, None] & inside_x[:, None, :]


def mix(images: torch.Tensor, labels: torch.Tensor, partners: torch.Tensor,
        partner_labels: torch.Tensor, parameters: Dict[str, torch.Tensor],
        num_classes: int = 10) -> Tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix of each image with its partner: (mixed images, soft targets (N, classes)).

    MixUp blends the two images with weight w; CutMix pastes a box of the partner covering a
    share 1 - w of the image (clipped at the border, after which w is the share actually kept).
    The targets mix the two one-hot labels with the same w, so each row sums to one."""
    device = images.device
    weight = parameters["mix_weight"].to(device)
    use_cutmix = parameters["mix_cutmix"].to(device)
    height, width = images.shape[-2:]
    side = torch.sqrt(1 - weight)  # a box of (1 - w) of the area has sides sqrt(1 - w)
    half_h, half_w = (side * height / 2).round().long(), (side * width / 2).round().long()
    centre_y, centre_x = parameters["mix_y"].to(device), parameters["mix_x"].to(device)
    box = _square_mask(height, width, (centre_y - half_h).clamp(0, height),
                       (centre_y + half_h).clamp(0, height), (centre_x - half_w).clamp(0, width),
                       (centre_x + half_w).clamp(0, width), device)
    box &= use_cutmix[:, None, None]
    blend = torch.where(use_cutmix, torch.ones_like(weight), weight)[:, None, None, None]
    mixed = torch.where(box[:, None], partners, images * blend + partners * (1 - blend))
    kept = torch.where(use_cutmix, 1 - box.float().mean((1, 2)), weight)[:, None]
    targets = kept * F.one_hot(labels, num_classes) + (1 - kept) * F.one_hot(partner_labels, num_classes)
    return mixed, targets


@functools.lru_cache(maxsize=None)
def _channel_statistics(device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: copying a new host tensor to a GPU makes the CPU wait for the GPU,
    # which, every batch, would keep the CPU from queueing work ahead of it.
    def column(values):
        return torch.tensor(values).to(device)[None, :, None, None]

    return column(CIFAR10_MEAN), column(CIFAR10_STD)


def normalize(images: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """Floats in [0, 1] -> zero mean, unit variance per channel (CIFAR-10 statistics)."""
    mean, std = _channel_statistics(images.device)
    if in_place:
        return images.sub_(mean).div_(std)
    return (images - mean) / std


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """normalize undone: normalized floats back to [0, 1] (before any clipping)."""
    mean, std = _channel_statistics(images.device)
    return images * std + mean


def augment_batch(images: torch.Tensor, parameters: Dict[str, torch.Tensor],
                  augmentation: Augmentation) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) on any device -> augmented, normalized float32 batch."""
    a = augmentation
    p = {name: value.to(images.device, non_blocking=True) for name, value in parameters.items()}
    if a.crop_padding or a.flip or a.rotation_degrees:
        images = crop_flip_rotate(images, p["crop_y"], p["crop_x"], p["flip"], p["angle"],
                                  a.crop_padding)
    images = images.float().mul_(1 / 255)
    if a.brightness or a.contrast or a.saturation:
        images = color_jitter(images, p["brightness"], p["contrast"], p["saturation"],
                              p["jitter_order"])
    images = normalize(images, in_place=True)
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
    """One epoch of augmented batches from uint8 images (N, 3, 32, 32) kept on the device.
    With MixUp/CutMix on, each image mixes with its mirror position in the (shuffled) batch and
    the batches carry soft targets (N, 10) instead of labels."""
    batches = epoch_batches(len(labels), batch_size, generator, rank, world_size)
    # Drawn for every image of the epoch (all ranks alike) and moved to the device once, as one
    # table, so that a batch's parameters take one indexing operation, not eleven.
    parameters = draw_parameters(len(labels), augmentation, generator)
    names, widths = list(parameters), [v.shape[1] if v.ndim > 1 else 1 for v in parameters.values()]
    table = torch.cat([v.reshape(len(labels), -1).float() for v in parameters.values()], 1)
    table = table.to(images.device)
    dtypes = [v.dtype for v in parameters.values()]
    for indices in batches:
        on_device = indices.to(images.device, non_blocking=True)
        columns = table[on_device].split(widths, 1)
        batch_parameters = {name: column.squeeze(1).to(dtype) if width == 1 else column.to(dtype)
                            for name, column, width, dtype in zip(names, columns, widths, dtypes)}
        batch, batch_labels = augment_batch(images[on_device], batch_parameters, augmentation), labels[on_device]
        if mixes(augmentation):
            batch, batch_labels = mix(batch, batch_labels, batch.flip(0), batch_labels.flip(0),
                                      batch_parameters)
        yield batch, batch_labels


class PerImageDataset(torch.utils.data.Dataset):
    """uint8 (N, 32, 32, 3) images through a per-image PIL transform, like torchvision's CIFAR10.
    With MixUp/CutMix on, each image mixes with a random other one and comes with soft targets."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform,
                 augmentation: Augmentation = Augmentation()):
        self.images, self.labels, self.transform = images, labels, transform
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.labels)

    def transformed(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), torch.tensor(int(self.labels[index]))

    def __getitem__(self, index: int):
        image, label = self.transformed(index)
        if not mixes(self.augmentation):
            return image, int(label)
        # The worker's global generator, which the DataLoader seeds per epoch (see below).
        partner, partner_label = self.transformed(int(torch.randint(len(self), (1,))))
        mixed, targets = mix(image[None], label[None], partner[None], partner_label[None],
                             draw_mixing(1, self.augmentation, None))
        return mixed[0], targets[0]


def dataloader_batches(images: np.ndarray, labels: np.ndarray, augmentation: Augmentation,
                       batch_size: int, generator: torch.Generator, rank: int = 0,
                       world_size: int = 1, num_workers: int = 0,
                       pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """One epoch through per-image torchvision transforms in DataLoader workers."""
    dataset = PerImageDataset(images, labels, per_image_transform(augmentation), augmentation)
    index_batches = [b.tolist() for b in epoch_batches(len(labels), batch_size, generator,
                                                       rank, world_size)]
    # The loader's own generator seeds the workers' transforms: the same for a given epoch
    # however often the run is restarted.
    worker_seeds = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    return torch.utils.data.DataLoader(dataset, batch_sampler=index_batches, num_workers=num_workers,
                                       pin_memory=pin_memory, generator=worker_seeds)


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, 32, 32, 3), as stored, -> a uint8 tensor (N, 3, 32, 32), as networks take."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def to_device_tensors(images: np.ndarray, labels: np.ndarray,
                      device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 32, 32, 3) numpy -> uint8 (N, 3, 32, 32) and int64 labels on `device`."""
    return to_nchw(images).to(device), torch.from_numpy(labels).to(device)
