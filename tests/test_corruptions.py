import os

import numpy as np
import pytest
import torch

from helpers.options.corruptions import (KINDS, PARAMETERS, RANDOM_KINDS, SEVERITIES, corrupt,
                                 corrupted_sets, fingerprint)

# Not monotone in the script: saturate first removes colour (severities 1-2), then adds it (3-5);
# elastic_transform's affine jitter shrinks as its displacement grows.
NOT_MONOTONE = ("saturate", "elastic_transform")


def make_images(count=6, seed=0):
    """Blocky colour images with fine noise, one flat grey and one flat white image."""
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.integers(0, 256, (count, 8, 8, 3)), np.ones((1, 4, 4, 1), np.int64))
    images = (blocks // 4 * 3 + rng.integers(0, 64, (count, 32, 32, 3))).astype(np.uint8)
    images[0], images[1] = 101, 255
    return images


IMAGES = make_images()


def mean_change(corrupted, images=IMAGES):
    return np.abs(corrupted.astype(np.int64) - images).mean()


def test_every_kind_has_five_values_a_fidelity_a_source_and_a_library_call():
    assert len(KINDS) >= 8 and set(KINDS) == set(PARAMETERS) and set(RANDOM_KINDS) <= set(KINDS)
    for kind in KINDS:
        entry = PARAMETERS[kind]
        assert len(entry["values"]) == len(SEVERITIES) == 5
        assert entry["source"].startswith(kind + "(): ") and entry["library"]
        assert entry["fidelity"] == "as in CIFAR-10-C" or entry["fidelity"].startswith(
            "approximate: ")


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_images_and_other_seed_other_images_where_random(kind):
    first = corrupt(IMAGES, kind, 3, seed=0)
    assert np.array_equal(first, corrupt(IMAGES, kind, 3, seed=0))
    assert np.array_equal(first, corrupt(IMAGES, kind, 3, seed=1)) == (kind not in RANDOM_KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_severity_keeps_shape_and_dtype_and_changes_a_textured_image(kind):
    for severity in SEVERITIES:
        out = corrupt(IMAGES, kind, severity)
        assert out.shape == IMAGES.shape and out.dtype == np.uint8
        assert mean_change(out[2:], IMAGES[2:]) > 0


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind not in NOT_MONOTONE])
def test_severity_5_changes_images_more_than_severity_1(kind):
    assert mean_change(corrupt(IMAGES, kind, 5)) > mean_change(corrupt(IMAGES, kind, 1)) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_an_image_is_corrupted_the_same_in_any_subset_order_or_batch(kind):
    for severity in SEVERITIES:
        whole = corrupt(IMAGES, kind, severity, seed=7)
        assert np.array_equal(whole[2:5], corrupt(IMAGES[2:5], kind, severity, seed=7))
        assert np.array_equal(whole[::-1], corrupt(IMAGES[::-1], kind, severity, seed=7))
        assert np.array_equal(whole[3:4], corrupt(IMAGES[3:4].copy(), kind, severity, seed=7))


@pytest.mark.parametrize("kind", ["gaussian_blur", "elastic_transform", "contrast", "pixelate"])
def test_black_and_white_backgrounds_keep_their_level(kind):
    # gaussian_blur's kernel sums to just under 1 at sigma 0.4: truncation would make 255 254.
    flat = np.stack([np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)])
    for severity in SEVERITIES:
        assert np.array_equal(corrupt(flat, kind, severity), flat)


def test_contrast_is_the_scripts_arithmetic_to_the_bit():
    for severity, c in zip(SEVERITIES, PARAMETERS["contrast"]["values"]):
        expected = []
        for image in IMAGES:  # make_cifar_c.py's contrast(), one image at a time
            x = np.array(image) / 255.
            means = np.mean(x, axis=(0, 1), keepdims=True)
            expected.append(np.uint8(np.clip((x - means) * c + means, 0, 1) * 255))
        assert np.array_equal(corrupt(IMAGES, "contrast", severity), np.stack(expected))


def test_hsv_kinds_move_v_and_s_as_the_script():
    black = np.zeros((1, 32, 32, 3), np.uint8)
    assert (np.abs(corrupt(black, "brightness", 1).astype(int) - 0.05 * 255) <= 1).all()
    assert (corrupt(IMAGES[1:2], "brightness", 5) == 255).all()  # V is clipped at 1
    reddish = corrupt(IMAGES[:1], "saturate", 4)  # a grey pixel has hue 0: S 0 -> 0.1 makes it red
    assert (reddish[..., 0] == 101).all() and (np.abs(reddish[..., 1:] - 101 * 0.9) <= 1).all()
    assert corrupt(IMAGES, "saturate", 2).std(-1).mean() < IMAGES.std(-1).mean() / 2


def test_impulse_noise_sets_values_to_0_or_255_and_keeps_the_others():
    out = corrupt(IMAGES, "impulse_noise", 5)
    changed = out != IMAGES
    assert changed.any() and np.isin(out[changed], (0, 255)).all()


def test_bad_kind_severity_or_images_raise_naming_the_valid_ones():
    with pytest.raises(ValueError, match="gaussian_noise.*saturate"):
        corrupt(IMAGES, "fog", 1)
    for severity in (0, 6, 2.0, True):
        with pytest.raises(ValueError, match=r"\(1, 2, 3, 4, 5\)"):
            corrupt(IMAGES, "contrast", severity)
    with pytest.raises(ValueError, match="valid kinds"):
        corrupted_sets(IMAGES, kinds=("contrast", "zoom_blur"))
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 4, 5\)"):
        corrupted_sets(IMAGES, severities=(1, 6))
    with pytest.raises(ValueError, match="uint8"):
        corrupt(IMAGES.astype(np.float32), "contrast", 1)
    with pytest.raises(ValueError, match="32, 32, 3"):
        corrupt(IMAGES[:, :16], "contrast", 1)


def test_corrupted_sets_yield_every_kind_and_severity_in_order():
    sets = list(corrupted_sets(IMAGES[:2], kinds=("contrast", "gaussian_noise"),
                               severities=(1, 5), seed=3))
    assert [(kind, severity) for kind, severity, _ in sets] == [
        ("contrast", 1), ("contrast", 5), ("gaussian_noise", 1), ("gaussian_noise", 5)]
    assert np.array_equal(sets[3][2], corrupt(IMAGES[:2], "gaussian_noise", 5, seed=3))
    assert len(corrupt(IMAGES[:0], "elastic_transform", 2)) == 0


def test_fingerprint_changes_with_one_pixel_or_label():
    sets = [("contrast", 2, corrupt(IMAGES, "contrast", 2))]
    reference = fingerprint(sets)
    assert len(reference) == 64 and reference == fingerprint(list(sets))
    changed = sets[0][2].copy()
    changed[4, 31, 0, 2] ^= 1
    assert fingerprint([("contrast", 2, changed)]) != reference
    assert fingerprint([("contrast", 3, sets[0][2])]) != reference
    with pytest.raises(ValueError):
        fingerprint([("contrast", 2, sets[0][2].astype(np.int16))])


# --- an evaluation under shift -------------------------------------------------------------------

def _tiny_weights(tmp_path):
    from helpers.files import save_weights
    from helpers.model import NetworkShape
    from helpers.recipes import TestTimeAugmentation

    torch.manual_seed(0)
    path = str(tmp_path / "model.pt")
    save_weights(path, NetworkShape(width_multiplier=0.25, blocks=(1, 1, 1)).build(),
                 TestTimeAugmentation(flip=True))
    return path


def _evaluated_under_shift(tmp_path, folder, **parameters):
    from helpers import stages
    from helpers.settings import make_config

    run = stages.start(make_config(data_source="synthetic", test_subset=20, corruptions=True,
                                   progress="none", output_dir=str(tmp_path / folder),
                                   model_weights=_tiny_weights(tmp_path), **parameters))
    data = stages.load(run)
    result = stages.load_trained(run, data)
    test = stages.evaluate_test(run, data, result)
    shift = stages.evaluate_under_shift(run, data, result)
    return run, data, test, shift, stages.save_run(run, data, result, test)


def test_an_evaluation_under_shift_records_every_kind_and_severity_and_repeats(tmp_path):
    from helpers import stages
    from helpers.options.corruptions import KINDS

    run, data, test, shift, metrics = _evaluated_under_shift(tmp_path, "first")
    recorded = metrics["corruptions"]
    assert recorded["severities"] == [1, 2, 3, 4, 5] and list(recorded["accuracy"]) == list(KINDS)
    assert all(len(values) == 5 and all(0 <= v <= 100 for v in values)
               for values in recorded["accuracy"].values())
    assert recorded["test_images"] == 20 and len(recorded["fingerprint"]) == 64
    assert 0 <= recorded["mean_accuracy"] <= 100
    again = _evaluated_under_shift(tmp_path, "second")[3]
    assert again["accuracy"] == shift["accuracy"] and again["fingerprint"] == shift["fingerprint"]
    table = stages.shift_table(run, test, shift)
    assert "| gaussian_noise |" in table and "(approximate)" in table and "–" in table
    assert "not comparable with published CIFAR-10-C means" in table
    assert list(stages.shift_figures(run, data, test, shift)) == ["accuracy_under_shift"]
    assert os.path.isfile(tmp_path / "first" / "figures" / "accuracy_under_shift.png")


def test_without_corruptions_nothing_is_tested_under_shift_and_the_notebook_says_how(tmp_path):
    from helpers import stages
    from helpers.settings import make_config

    run = stages.start(make_config(data_source="synthetic", test_subset=20, progress="none",
                                   output_dir=str(tmp_path / "out"),
                                   model_weights=_tiny_weights(tmp_path)))
    data = stages.load(run)
    result = stages.load_trained(run, data)
    test = stages.evaluate_test(run, data, result)
    assert stages.evaluate_under_shift(run, data, result) is None
    assert "set `corruptions=True`" in stages.shift_table(run, test, None)
    assert "corruptions" not in stages.save_run(run, data, result, test)


def test_the_command_line_under_shift_gives_the_numbers_of_the_stages(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    _, _, _, shift, _ = _evaluated_under_shift(tmp_path, "stages")
    done = subprocess.run([sys.executable, "-m", "helpers.cli", "--data_source", "synthetic",
                           "--test_subset", "20", "--corruptions", "--model_weights",
                           str(tmp_path / "model.pt"), "--output_dir", str(tmp_path / "cli"),
                           "--progress", "none"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| speckle_noise |" in done.stdout  # the table, printed
    with open(tmp_path / "cli" / "metrics.json") as file:
        recorded = json.load(file)["corruptions"]
    assert recorded["accuracy"] == shift["accuracy"] and recorded["fingerprint"] == shift["fingerprint"]
