"""The report's future work as options: architectures under the 5M budget, MixUp/CutMix,
ensembles, distillation, and calibration and per-class quality in every report."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.augment import PerImageDataset, epoch_generator, fast_batches, per_image_transform
from helpers.files import save_weights
from helpers.settings import ConfigError, make_config
from helpers.evaluation import (Ensemble, expected_calibration_error, per_class_scores,
                                reliability_bins)
from helpers.model import (PARAMETER_BUDGET, REFERENCE_PARAMETER_COUNT, NetworkShape, ResNeXtBlock,
                           ResNet, SqueezeExcitation, count_parameters)
from helpers.stages import check_parameter_budget
from helpers.recipes import Augmentation, TestTimeAugmentation
from helpers.step import distillation_loss
from helpers.evaluation import tta_views


@pytest.mark.parametrize("architecture, block", [("se_resnet", SqueezeExcitation),
                                                 ("resnext", ResNeXtBlock)])
def test_each_architecture_has_its_blocks_and_stays_under_the_budget(architecture, block):
    network = NetworkShape(architecture).build()
    assert any(isinstance(m, block) for m in network.modules())
    assert REFERENCE_PARAMETER_COUNT * 0.95 < count_parameters(network) < PARAMETER_BUDGET
    assert network.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert count_parameters(NetworkShape("resnet").build()) == REFERENCE_PARAMETER_COUNT


def test_resnext_convolutions_are_grouped():
    grouped = [m for m in NetworkShape("resnext").build().modules()
               if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(grouped) == 11 and all(m.groups == 16 for m in grouped)


def test_a_network_at_or_over_five_million_parameters_is_refused_with_its_count():
    wide = ResNet(widths=(96, 192, 384))
    with pytest.raises(ConfigError, match=f"{count_parameters(wide):,} trainable parameters"):
        check_parameter_budget(wide, "this network")


def test_unknown_architecture_is_refused():
    with pytest.raises(ConfigError, match="architecture='vgg' is not one of"):
        make_config(architecture="vgg")


MIXING = Augmentation(crop_padding=0, flip=False, mixup_alpha=0.4, cutmix_alpha=1.0)


def test_mixed_targets_sum_to_one_and_name_the_image_and_its_partner():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(32) % 10
    for mixed, targets in fast_batches(images, labels, MIXING, 16, epoch_generator(0, 1)):
        assert mixed.shape == (16, 3, 32, 32) and targets.shape == (16, 10)
        assert torch.allclose(targets.sum(1), torch.ones(16))
        assert (targets >= 0).all() and (targets > 0).sum(1).max() <= 2
        assert (targets[0] > 0).sum() >= 1


def test_mixup_blends_whole_images_with_the_mirror_position_of_the_batch():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(8)
    plain = Augmentation(crop_padding=0, flip=False)
    mixup = Augmentation(crop_padding=0, flip=False, mixup_alpha=1.0)
    (clean, order), = [(b, t) for b, t in fast_batches(images, labels, plain, 8, epoch_generator(0, 1))]
    (mixed, targets), = list(fast_batches(images, labels, mixup, 8, epoch_generator(0, 1)))
    weight = targets[torch.arange(8), order]
    expected = weight[:, None, None, None] * clean + (1 - weight[:, None, None, None]) * clean.flip(0)
    assert torch.allclose(mixed, expected, atol=1e-5)


def test_cutmix_targets_match_the_share_of_pixels_kept():
    images = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    images[1::2] = 255  # odd labels bright, even labels dark
    plain = Augmentation(crop_padding=0, flip=False)
    cutmix = Augmentation(crop_padding=0, flip=False, cutmix_alpha=1.0)
    (_, order), = list(fast_batches(images, torch.arange(8), plain, 8, epoch_generator(0, 2)))
    (mixed, targets), = list(fast_batches(images, torch.arange(8), cutmix, 8, epoch_generator(0, 2)))
    bright = mixed[:, 0] > 0  # normalized: dark pixels are negative, bright ones positive
    compared = 0
    for i in range(8):
        own, partner = int(order[i]), int(order[7 - i])
        if own % 2 != partner % 2:  # the pair differs, so each pixel shows whose it is
            kept = (bright[i] == bool(own % 2)).float().mean().item()
            assert kept == pytest.approx(targets[i, own].item(), abs=1e-6)
            compared += 1
    assert compared > 0 and torch.allclose(targets.sum(1), torch.ones(8))


def test_per_image_pipeline_mixes_too():
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(20) % 10
    dataset = PerImageDataset(images, labels, per_image_transform(MIXING), MIXING)
    torch.manual_seed(0)
    image, targets = dataset[3]
    assert image.shape == (3, 32, 32) and targets.shape == (10,)
    assert targets.sum().item() == pytest.approx(1.0) and targets[3] > 0


def test_ensemble_averages_its_members_probabilities_and_differs_from_each():
    torch.manual_seed(1)
    members = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
               for _ in range(2)]
    images = torch.randn(256, 3, 32, 32)
    ensemble = Ensemble(members).eval()
    with torch.no_grad():
        probabilities = [m(images).softmax(1) for m in members]
        combined = ensemble(images).softmax(1)
    assert torch.allclose(combined, (probabilities[0] + probabilities[1]) / 2, atol=1e-6)
    for member_probabilities in probabilities:
        assert not torch.equal(combined.argmax(1), member_probabilities.argmax(1))


def test_distillation_at_weight_zero_is_the_plain_loss_and_a_perfect_student_adds_nothing():
    torch.manual_seed(0)
    logits, teacher, labels = torch.randn(16, 10), torch.randn(16, 10), torch.randint(0, 10, (16,))
    cross_entropy = torch.nn.CrossEntropyLoss()
    assert torch.equal(distillation_loss(logits, teacher, labels, cross_entropy, 0.0, 4.0),
                       cross_entropy(logits, labels))
    assert distillation_loss(teacher, teacher, labels, cross_entropy, 1.0, 4.0).item() == \
        pytest.approx(0.0, abs=1e-6)
    soft = distillation_loss(logits, teacher, labels, cross_entropy, 1.0, 2.0)
    expected = 4 * F.kl_div(F.log_softmax(logits / 2, 1), F.softmax(teacher / 2, 1),
                            reduction="batchmean")
    assert soft.item() == pytest.approx(expected.item())


def test_calibration_error_of_a_calibrated_predictor_is_near_zero_and_of_an_overconfident_one_large():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.1, 1.0, 200_000)
    calibrated = rng.uniform(size=confidence.size) < confidence
    assert expected_calibration_error(confidence, calibrated) < 0.5
    assert expected_calibration_error(np.full(1000, 0.99), np.arange(1000) < 600) == pytest.approx(39.0)
    bins = reliability_bins(np.array([0.05, 0.5, 1.0]), np.array([True, False, True]))
    assert bins["count"].sum() == 3 and bins["count"][0] == 1 and bins["count"][-1] == 1


def test_per_class_precision_recall_and_f1():
    labels, predicted = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    scores = per_class_scores(labels, predicted, ["a", "b"])
    assert scores["a"] == {"precision": 100.0, "recall": 50.0, "f1": pytest.approx(200 / 3),
                           "support": 2}
    assert scores["b"]["precision"] == pytest.approx(200 / 3) and scores["b"]["recall"] == 100.0


def test_translate_tta_views_weigh_half_the_original_and_shift_both_ways():
    batch = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    views = tta_views(batch, TestTimeAugmentation(flip=True, translate=1))
    assert len(views) == 6 and sum(w for w, _ in views) == pytest.approx(1.0)
    assert torch.equal(views[2][1][..., 1:, 1:], batch[..., :-1, :-1])   # shifted down-right
    assert torch.equal(views[4][1][..., :-1, :-1], batch[..., 1:, 1:])   # shifted up-left
    assert [w for w, _ in tta_views(batch, TestTimeAugmentation())] == [1.0]


def _save_tiny_trained(path, architecture="resnet", seed=0):
    torch.manual_seed(seed)
    network = NetworkShape(architecture).build()
    save_weights(str(path), network)
    return str(path)


def test_an_ensemble_run_reports_each_member_and_the_ensemble(tmp_path):
    from helpers import stages

    paths = [_save_tiny_trained(tmp_path / f"m{seed}.pt", seed=seed) for seed in (0, 1)]
    config = make_config(data_source="synthetic", test_subset=100, model_weights=str(paths), output_dir=str(tmp_path / "out"),
                         progress="none")
    run = stages.start(config)
    data = stages.load(run)
    result = stages.load_trained(run, data)
    test = stages.evaluate_test(run, data, result)
    metrics = stages.save_run(run, data, result, test)
    assert [m["path"] for m in metrics["ensemble_members"]] == paths
    assert metrics["test_accuracy"] == test.accuracy and len(test.member_accuracies) == 2
    assert metrics["test_images"] == 100 and not os.path.exists(tmp_path / "out" / "model.pt")
    with open(tmp_path / "out" / "metrics.json") as file:
        saved = json.load(file)
    assert set(saved["per_class"]) == set(data.classes) and 0 <= saved["ece"] <= 100
    assert "ensemble members alone" in stages.quality_report(run, data, test)


def test_distillation_needs_a_teacher_and_trains_with_one(tmp_path):
    from helpers import stages

    base = dict(data_source="synthetic", train_subset=40, val_size=0, test_subset=20,
                batch_size=20, epochs=1, progress="none", output_dir=str(tmp_path / "out"),
                recipe_overrides={"distill_weight": 0.5, "distill_temperature": 2.0})
    with pytest.raises(ConfigError, match="needs teacher_weights"):
        stages.start(make_config(**base))
    teacher = _save_tiny_trained(tmp_path / "teacher.pt", "se_resnet")
    without_weight = {**base, "recipe_overrides": None}
    with pytest.raises(ConfigError, match=r"distill_weight is 0, so the teacher would change "
                                          r"nothing.*`recipe_overrides=\{'distill_weight': 0.5\}`"):
        stages.start(make_config(**without_weight, teacher_weights=teacher))
    run = stages.start(make_config(**base, teacher_weights=teacher))
    data = stages.load(run)
    result = stages.train(run, data, stages.build_network(run))
    assert result.epochs_completed == 1 and np.isfinite(result.history[0]["train_loss"])
