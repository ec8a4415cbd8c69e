import pytest
import torch

from helpers.augment import (augment_batch, color_jitter, crop_flip_rotate, draw_parameters,
                             epoch_batches, epoch_generator, fast_batches, normalize,
                             per_image_transform)
from helpers.recipes import IMPROVED_AUGMENTATION, REFERENCE_AUGMENTATION, Augmentation

IDENTITY = Augmentation(crop_padding=0, flip=False)
COUNT = 4000


def geometric(batch, crop_y=4, crop_x=4, flip=False, degrees=0.0, padding=4):
    """crop_flip_rotate with the same settings for every image (defaults: no change)."""
    n = len(batch)
    full = lambda value, dtype: torch.full((n,), value, dtype=dtype)
    return crop_flip_rotate(batch, full(crop_y, torch.long), full(crop_x, torch.long),
                            full(flip, torch.bool), full(degrees, torch.float32), padding)


def images(count=8, seed=0):
    return torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def drawn(augmentation=REFERENCE_AUGMENTATION, count=COUNT):
    return draw_parameters(count, augmentation, torch.Generator().manual_seed(0))


def test_identity_settings_return_the_input_unchanged_but_normalized():
    batch = images()
    out = augment_batch(batch, drawn(IDENTITY, len(batch)), IDENTITY)
    assert torch.allclose(out, normalize(batch.float() / 255), atol=1e-6)


def test_crop_offsets_stay_within_the_padding_and_cover_it():
    p = drawn()
    for offsets in (p["crop_y"], p["crop_x"]):
        assert offsets.min() == 0 and offsets.max() == 2 * REFERENCE_AUGMENTATION.crop_padding


def test_crop_shifts_the_image_by_its_offset_and_fills_with_zeros():
    batch = images(2)
    assert torch.equal(geometric(batch), batch)              # offset 4 = centred = unchanged
    out = geometric(batch, crop_y=0, crop_x=8)
    assert torch.equal(out[:, :, 4:, :28], batch[:, :, :28, 4:])
    assert out[:, :, :4].eq(0).all() and out[:, :, :, 28:].eq(0).all()


def test_flip_mirrors_the_image_and_comes_after_the_crop():
    batch = images(2)
    assert torch.equal(geometric(batch, flip=True), batch.flip(-1))
    assert torch.equal(geometric(batch, crop_x=8, flip=True), geometric(batch, crop_x=8).flip(-1))


def test_flip_rate_is_about_one_half():
    assert abs(drawn()["flip"].float().mean().item() - 0.5) < 0.03


def test_rotation_angles_and_jitter_factors_stay_within_their_ranges():
    p = drawn()
    r = REFERENCE_AUGMENTATION.rotation_degrees
    assert p["angle"].abs().max() <= r and p["angle"].abs().max() > 0.9 * r
    for name in ("brightness", "contrast", "saturation"):
        strength = getattr(REFERENCE_AUGMENTATION, name)
        assert p[name].min() >= 1 - strength and p[name].max() <= 1 + strength
        assert abs(p[name].mean().item() - 1) < 0.01


def test_jitter_order_is_a_random_permutation_per_image():
    order = drawn()["jitter_order"]
    assert torch.equal(order.sort(1).values, torch.arange(3).expand_as(order))
    assert len({tuple(row) for row in order.tolist()}) == 6


def test_zero_rotation_and_unit_jitter_factors_change_nothing():
    batch = images().float() / 255
    ones = torch.ones(len(batch))
    order = torch.tensor([[0, 1, 2]]).expand(len(batch), 3)
    assert torch.allclose(color_jitter(batch.clone(), ones, ones, ones, order), batch)


def test_rotation_by_90_degrees_turns_the_image():
    batch = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
    batch[0, 0, 0, 10] = 1  # a pixel on the top edge
    turned = geometric(batch, degrees=90.0)
    assert turned.sum() == 1 and turned[0, 0, 0, 10] == 0
    assert torch.equal(turned, torch.rot90(batch, 1, (2, 3)))  # counter-clockwise


def test_cutout_zeroes_one_square_of_the_normalized_image():
    batch = images()
    out = augment_batch(batch, drawn(Augmentation(crop_padding=0, flip=False, cutout_size=8), len(batch)),
                        Augmentation(crop_padding=0, flip=False, cutout_size=8))
    zeros = (out == 0).all(1).flatten(1).sum(1)
    assert zeros.max() <= 64 and zeros.min() >= 16  # a clipped 8x8 square keeps at least 4x4


def test_same_seed_gives_the_same_batches_and_another_epoch_differs():
    batch, labels = images(100), torch.arange(100) % 10

    def epoch(seed, number):
        return list(fast_batches(batch, labels, REFERENCE_AUGMENTATION, 32, epoch_generator(seed, number)))

    first, again, other = epoch(0, 1), epoch(0, 1), epoch(0, 2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])
    assert sum(len(y) for _, y in first) == 100


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_are_disjoint_and_cover_the_epoch(world_size):
    shards = [torch.cat(epoch_batches(96, 24, epoch_generator(0, 1), rank, world_size))
              for rank in range(world_size)]
    everything = torch.cat(shards)
    assert len(everything) == len(set(everything.tolist())) == 96


@pytest.mark.parametrize("factor", [0.8, 1.15])
def test_batched_jitter_matches_torchvision_for_the_same_factor(factor):
    import torchvision.transforms.functional as TF

    batch = images().float() / 255
    f = torch.full((len(batch),), factor)
    for step, reference in enumerate((TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)):
        order = torch.tensor([[step, (step + 1) % 3, (step + 2) % 3]]).expand(len(batch), 3)
        ones = torch.ones(len(batch))
        factors = [f if i == step else ones for i in range(3)]
        expected = torch.stack([reference(image, factor) for image in batch])
        assert torch.allclose(color_jitter(batch.clone(), *factors, order), expected, atol=1e-5)


def test_batched_rotation_matches_torchvision_rotate():
    import torchvision.transforms.functional as TF

    batch = images(4)
    theirs = torch.stack([TF.rotate(image, 7.0) for image in batch])
    assert (geometric(batch, degrees=7.0) == theirs).float().mean() > 0.97  # rounding of ties


def test_batched_and_per_image_pipelines_have_the_same_output_statistics():
    from PIL import Image

    pixels = images(400, seed=1)
    fast = augment_batch(pixels, drawn(REFERENCE_AUGMENTATION, 400), REFERENCE_AUGMENTATION)
    transform = per_image_transform(REFERENCE_AUGMENTATION)
    torch.manual_seed(0)
    slow = torch.stack([transform(Image.fromarray(p.permute(1, 2, 0).numpy())) for p in pixels])
    assert slow.shape == fast.shape == (400, 3, 32, 32)
    # Different random draws: agreement within sampling noise, not exact.
    assert abs(fast.mean() - slow.mean()) < 0.08 and abs(fast.std() - slow.std()) < 0.05
    zero_pixels = lambda x: (x == normalize(torch.zeros(1, 3, 1, 1))).all(1).float().mean()
    assert abs(zero_pixels(fast) - zero_pixels(slow)) < 0.02  # padding and rotation corners


def test_improved_augmentation_uses_cutout_and_no_jitter():
    assert IMPROVED_AUGMENTATION.cutout_size > 0 and IMPROVED_AUGMENTATION.brightness == 0
