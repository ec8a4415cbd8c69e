"""Smaller networks, distillation into them, and int8 weights: the sizes' parameter counts,
the distillation loss with a smaller student, an int8 network's predictions on tiny data, and
model.pt files of students and int8 networks going back through model_weights."""
import json
import os

import numpy as np
import pytest
import torch

from helpers.augment import to_nchw
from helpers.files import CheckpointError
from helpers.settings import ConfigError, make_config
from helpers.data import DataError, make_synthetic
from helpers.model import (REFERENCE_PARAMETER_COUNT, NetworkShape, count_parameters, device_of,
                           scaled_width)
from helpers.options.quantization import Int8Network, quantize
from helpers.options.sizes import paired_changes
from helpers.step import Distillation
from helpers.evaluation import predict_logits
from helpers.files import read_weights, save_weights


# --- sizes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("width_multiplier, blocks, params", [
    (1.0, (4, 4, 3), 4_697_162),    # the report's network
    (0.5, (4, 4, 3), 1_177_130),    # half-width: a quarter of the parameters
    (0.25, (4, 4, 3), 295_706),     # quarter-width: a sixteenth
    (0.25, (2, 2, 2), 175_258),     # quarter-width, two blocks per stage
    (1.0, (2, 2, 2), 2_777_674),
])
def test_each_size_has_its_parameter_count(width_multiplier, blocks, params):
    network = NetworkShape("resnet", width_multiplier, blocks).build()
    assert count_parameters(network) == params
    assert network.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_half_and_quarter_width_keep_about_a_quarter_and_a_sixteenth_of_the_parameters():
    half, quarter = (count_parameters(NetworkShape(width_multiplier=w).build()) for w in (0.5, 0.25))
    assert 3.9 < REFERENCE_PARAMETER_COUNT / half < 4.1
    assert 15.5 < REFERENCE_PARAMETER_COUNT / quarter < 16.5


def test_width_multiplier_scales_every_stage_and_rounds_to_multiples_of_eight():
    assert NetworkShape(width_multiplier=0.5).build().shape.widths == (32, 64, 128)
    assert NetworkShape(width_multiplier=0.75).build().shape.widths == (48, 96, 192)
    assert [scaled_width(c, 0.3) for c in (64, 128, 256)] == [16, 40, 80]
    network = NetworkShape(width_multiplier=0.25, blocks=(2, 2, 2)).build()
    assert network.stem[0].out_channels == 16 and [len(stage) for stage in network.stages] == [2, 2, 2]


@pytest.mark.parametrize("architecture", ["se_resnet", "resnext"])
def test_every_architecture_comes_at_quarter_width(architecture):
    network = NetworkShape(architecture, 0.25).build()
    assert count_parameters(network) < count_parameters(NetworkShape(architecture).build()) / 12
    assert network.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("parameters, says", [
    ({"width_multiplier": 0.1}, "width_multiplier=0.1 must be in [0.25, 1]"),
    ({"blocks": [4, 4]}, "blocks=[4, 4] must be three integers in [1, 16]"),
    ({"blocks": "2, x, 2"}, "'x' is not an integer"),
    ({"model_weights": "a.pt", "width_multiplier": 0.5},
     "width_multiplier=0.5 has no effect here: model_weights is set, and each weights file records"),
    ({"calibration_images": 100}, "calibration_images=100 has no effect here: quantize='off'"),
])
def test_sizes_and_quantization_settings_are_checked_with_their_reason(parameters, says):
    with pytest.raises(ConfigError, match=__import__("re").escape(says)):
        make_config(**parameters)


# --- distillation into a smaller student ---------------------------------------------------------

def test_the_distillation_loss_pulls_a_quarter_width_student_towards_a_full_size_teacher():
    torch.manual_seed(0)
    teacher, student = NetworkShape().build(), NetworkShape(width_multiplier=0.25).build()
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    distillation = Distillation(teacher, weight=1.0, temperature=4.0)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = distillation.loss(student(images), labels, images, torch.nn.CrossEntropyLoss())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in teacher.parameters())  # the teacher learns nothing


def _pipeline_run(tmp_path, **parameters):
    from helpers import stages

    config = make_config(**{"data_source": "synthetic", "progress": "none", "device": "cpu",
                            "output_dir": str(tmp_path / "out"), "figures_dir": str(tmp_path / "fig"),
                            **parameters})
    run = stages.start(config)
    data = stages.load(run)
    network = stages.build_network(run)
    result = stages.load_trained(run, data) if config.evaluate_only else stages.train(run, data, network)
    test = stages.evaluate_test(run, data, result)
    return stages.save_run(run, data, result, test), result


TINY_TRAINING = dict(train_subset=40, val_size=0, test_subset=20, batch_size=20, epochs=1)


def test_a_full_size_teacher_distils_into_a_quarter_width_student_whose_model_pt_records_its_size(tmp_path):
    teacher = str(tmp_path / "teacher.pt")
    save_weights(teacher, NetworkShape().build())
    metrics, _ = _pipeline_run(tmp_path, **TINY_TRAINING, width_multiplier=0.25, blocks=[2, 2, 2],
                               teacher_weights=teacher, recipe_overrides={"distill_weight": 0.5})
    assert metrics["params"] == 175_258 and metrics["width_multiplier"] == 0.25
    assert metrics["blocks"] == [2, 2, 2] and metrics["quantization"] is None
    saved = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert (saved["width_multiplier"], saved["blocks"], saved["params"]) == (0.25, [2, 2, 2], 175_258)
    assert saved["architecture"] == "resnet"


def test_a_students_model_pt_rebuilds_its_own_size_through_model_weights_and_as_teacher(tmp_path):
    torch.manual_seed(1)
    student = NetworkShape(width_multiplier=0.5, blocks=(1, 1, 1)).build()
    path = str(tmp_path / "student.pt")
    save_weights(path, student)
    loaded = read_weights(path)[0]
    assert loaded.shape == student.shape and count_parameters(loaded) == count_parameters(student)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(predict_logits(loaded, images, 8), predict_logits(student.half().float(), images, 8),
                          atol=1e-4)
    metrics, _ = _pipeline_run(tmp_path / "eval", test_subset=20, model_weights=path)
    assert metrics["params"] == count_parameters(student) and metrics["width_multiplier"] == 0.5
    _pipeline_run(tmp_path / "taught", **TINY_TRAINING, teacher_weights=path,  # as a teacher
                  recipe_overrides={"distill_weight": 0.5})


def test_weights_of_another_width_without_its_record_say_they_do_not_fit(tmp_path):
    path = str(tmp_path / "bare.pt")
    torch.save(NetworkShape(width_multiplier=0.25).build().state_dict(), path)  # other code: no size keys
    with pytest.raises(CheckpointError, match=r"does not fit this network .* of another shape "
                                              r"\(e.g. 'stem.0.weight': \[16, 3, 3, 3\] in the file, "
                                              r"\[64, 3, 3, 3\] here\)"):
        read_weights(path)[0]


# --- int8 ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_pair():
    """A quarter-width network whose BatchNorm statistics have seen the synthetic images (as a
    trained one's have), its int8 version calibrated on synthetic training images, and synthetic
    test images."""
    torch.manual_seed(0)
    train, test = make_synthetic(train_per_class=20, test_per_class=10)
    network = NetworkShape(width_multiplier=0.25).build()
    network.train()
    with torch.no_grad():
        for _ in range(3):
            predict_logits(network.train(), to_nchw(train.images), 200)  # sets eval(); redo train
            network.train()
            network(torch.randn(64, 3, 32, 32))
    network.eval()
    int8 = quantize(network, to_nchw(train.images), calibration_data="synthetic training images")
    return network, int8, to_nchw(test.images)


def test_an_int8_network_mostly_agrees_with_its_float_network_on_synthetic_images(trained_pair):
    network, int8, images = trained_pair
    float_logits, int8_logits = predict_logits(network, images, 50), predict_logits(int8, images, 50)
    agreement = (float_logits.argmax(1) == int8_logits.argmax(1)).float().mean().item()
    assert agreement >= 0.9
    scale = float_logits.abs().max().item()
    assert (float_logits - int8_logits).abs().max().item() < 0.2 * scale
    assert not torch.equal(float_logits, int8_logits)  # it did change precision


def test_an_int8_network_has_int8_weights_and_computes_on_the_cpu(trained_pair):
    _, int8, images = trained_pair
    assert isinstance(int8, Int8Network) and count_parameters(int8) == 295_706
    assert any(t.dtype == torch.qint8 for t in int8.graph.state_dict().values()
               if isinstance(t, torch.Tensor))
    moved = int8.half().to(torch.float64)  # .to() leaves the int8 kernels on the CPU as they are
    assert moved is int8 and device_of(int8) == torch.device("cpu")
    assert int8(images[:4].float()).dtype == torch.float32


def test_an_int8_model_pt_is_smaller_loads_with_weights_only_and_predicts_the_same(trained_pair, tmp_path):
    network, int8, images = trained_pair
    float_path, int8_path = str(tmp_path / "model.pt"), str(tmp_path / "model-int8.pt")
    float_bytes, int8_bytes = save_weights(float_path, network), save_weights(int8_path, int8)
    assert int8_bytes < float_bytes  # int8 against the half-precision float file
    saved = torch.load(int8_path, weights_only=True)
    assert saved["quantization"]["format"] == "int8" and saved["width_multiplier"] == 0.25
    assert saved["quantization"]["calibration_data"] == "synthetic training images"
    loaded = read_weights(int8_path)[0]
    assert isinstance(loaded, Int8Network)
    assert torch.equal(predict_logits(loaded, images, 50), predict_logits(int8, images, 50))


def test_an_int8_file_of_the_wrong_shape_is_refused_in_one_line(trained_pair, tmp_path):
    _, int8, _ = trained_pair
    path = str(tmp_path / "model-int8.pt")
    save_weights(path, int8)
    content = torch.load(path, weights_only=True)
    content["width_multiplier"] = 0.5
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="does not fit the int8 network 'resnet', "
                                              "width_multiplier=0.5 that it records"):
        read_weights(path)[0]


def test_paired_changes_count_answers_that_changed_and_which_way():
    labels = np.array([0, 1, 2, 3])
    changes = paired_changes(np.array([0, 1, 0, 0]), np.array([0, 0, 2, 0]), labels)
    assert changes == {"images": 4, "answer_changed": 2, "now_right": 1, "now_wrong": 1}


def test_a_training_run_with_quantize_tests_the_int8_network_and_writes_both_files(tmp_path):
    metrics, result = _pipeline_run(tmp_path, **TINY_TRAINING, width_multiplier=0.25,
                                    quantize="int8", calibration_images=20)
    assert isinstance(result.network, Int8Network)
    quantization = metrics["quantization"]
    assert quantization["calibration_images"] == 20 and "training split" in quantization["calibration_data"]
    assert quantization["file_bytes"] == os.path.getsize(tmp_path / "out" / "model-int8.pt")
    assert "quantization" not in torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    with open(tmp_path / "out" / "metrics.json") as file:
        assert json.load(file)["params"] == 295_706


def test_an_int8_evaluation_calibrates_on_training_images_never_test_images(tmp_path, monkeypatch):
    from helpers import data as data_module
    from helpers.options import calibration

    path = str(tmp_path / "model.pt")
    save_weights(path, NetworkShape(width_multiplier=0.25).build())
    splits = []
    loader = data_module.load_source_split
    for module in (data_module, calibration):  # the evaluation's loading, and calibration's
        monkeypatch.setattr(module, "load_source_split", lambda config, split, subset=None:
                            splits.append(split) or loader(config, split, subset))
    metrics, result = _pipeline_run(tmp_path, test_subset=20, model_weights=path, quantize="int8",
                                    calibration_images=30)
    # The test images for the evaluation; the training images for calibration alone.
    assert splits == ["test", "train"] and isinstance(result.network, Int8Network)
    assert metrics["quantization"]["calibration_images"] == 30
    assert os.path.isfile(tmp_path / "out" / "model-int8.pt")
    assert not os.path.exists(tmp_path / "out" / "model.pt")


def test_quantize_refuses_an_int8_file_an_ensemble_and_more_calibration_images_than_there_are(tmp_path):
    from helpers import stages

    path = str(tmp_path / "model.pt")
    save_weights(path, NetworkShape(width_multiplier=0.25).build())
    metrics, _ = _pipeline_run(tmp_path / "first", test_subset=20, model_weights=path,
                               quantize="int8", calibration_images=20)
    int8_path = str(tmp_path / "first" / "out" / "model-int8.pt")
    base = dict(data_source="synthetic", test_subset=20, quantize="int8",
                output_dir=str(tmp_path / "again"))
    with pytest.raises(ConfigError, match="is already int8: set quantize='off'"):
        stages.start(make_config(**base, model_weights=int8_path))
    with pytest.raises(ConfigError, match="quantizes one network, and model_weights lists 2"):
        stages.start(make_config(**base, model_weights=[path, path]))
    with pytest.raises(DataError, match="calibration_images=60 asks for more than the 40 training"):
        _pipeline_run(tmp_path / "few", **TINY_TRAINING, quantize="int8", calibration_images=60)
    # quantize='off' evaluates the int8 file as it is
    evaluated, result = _pipeline_run(tmp_path / "int8", test_subset=20, model_weights=int8_path)
    assert isinstance(result.network, Int8Network) and evaluated["quantization"]["format"] == "int8"


# --- the size/accuracy table ---------------------------------------------------------------------

def _write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        json.dump(content, file)


def test_the_size_table_is_made_from_the_committed_comparisons(tmp_path):
    from helpers.options.sizes import accuracy_entry, size_table

    labels = np.arange(1000) % 10
    right = lambda share: np.where(np.arange(1000) < share * 1000, labels, (labels + 1) % 10)  # noqa: E731
    speed = lambda value: {"images_per_second": value}  # noqa: E731
    assert size_table(str(tmp_path)).startswith("Not yet measured")
    _write(tmp_path / "int8-cpu" / "comparison.json", {
        "test_data": "CIFAR-10 official test images 0–999",
        "calibration": {"images": 1000, "data": "1,000 of CIFAR-10 official training images"},
        "networks": [{"weights": "results/big/model.pt", "params": 4_697_162,
                      "test_time_augmentation": "none", "trained": None,
                      "float": {"file_bytes": 9_400_000, "cpu": speed(50.0), **accuracy_entry(right(0.9), labels)},
                      "int8": {"file_bytes": 4_800_000, "cpu": speed(400.0), **accuracy_entry(right(0.89), labels)},
                      "int8_vs_float": paired_changes(right(0.9), right(0.89), labels)}]})
    _write(tmp_path / "distillation-cpu" / "comparison.json", {
        "test_data": "CIFAR-10 official test images 0–999",
        "train_data": "CIFAR-10 official training images, a class-balanced subset of 4,000",
        "environment": {"cpu_cores": 2},
        "scale": {"recipe": "improved", "epochs": 5, "train_images": 4000, "seed": 0, "batch_size": 64},
        "teacher": {"path": "results/big/model.pt"},
        "distillation": {"distill_weight": 0.5, "distill_temperature": 4.0},
        "student": {"width_multiplier": 0.25, "params": 295_706, "cpu": speed(300.0)},
        "arms": {"alone": {"model_bytes": 600_000, **accuracy_entry(right(0.5), labels)},
                 "distilled": {"model_bytes": 600_000, **accuracy_entry(right(0.6), labels)}},
        "distilled_vs_alone": paired_changes(right(0.5), right(0.6), labels)})
    header, _, *rows = size_table(str(tmp_path), link="").splitlines()
    assert "int8: calibrated on 1,000 of CIFAR-10 official training images" in header
    assert len(rows) == 4
    assert rows[0].startswith("| `results/big/model.pt` | 4,697,162 | 9.40 | 90.00 % (95 % interval 88.0–91.7 %, n = 1,000) | 50 |")
    assert rows[1].startswith("| its int8 version | 4,697,162 | 4.80 | 89.00 % ") and "10 of 1,000 answers changed" in rows[1]
    assert "student, width_multiplier=0.25, alone | 295,706 | 0.60 | 50.00 %" in rows[2]
    assert "distilled from `results/big/model.pt` (weight 0.5, temperature 4)" in rows[3]
    assert "100 of 1,000 answers changed (100 now right, 0 now wrong)" in rows[3] and rows[3].endswith("[distillation-cpu](distillation-cpu) |")


def test_an_int8_model_pt_teaches_a_student(trained_pair, tmp_path):
    _, int8, _ = trained_pair
    teacher = str(tmp_path / "model-int8.pt")
    save_weights(teacher, int8)
    metrics, result = _pipeline_run(tmp_path / "taught", **TINY_TRAINING, width_multiplier=0.25,
                                    blocks=[1, 1, 1], teacher_weights=teacher,
                                    recipe_overrides={"distill_weight": 0.5})
    assert result.epochs_completed == 1 and np.isfinite(result.history[0]["train_loss"])
    assert metrics["quantization"] is None  # the student is float; only its teacher was int8
