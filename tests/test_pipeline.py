"""The stages run again (a notebook cell run twice) either repeat their work from the same
starting point or stop and say what to do; an evaluation uses the weights' own test-time
augmentation unless the parameters choose another."""
import json
import os

import pytest
import torch

from helpers import stages
from helpers.files import load_checkpoint, read_weights, save_weights
from helpers.model import NetworkShape, count_parameters
from helpers.recipes import TestTimeAugmentation
from helpers.settings import ConfigError, make_config


def tiny(output_dir, **overrides):
    return make_config(**{"data_source": "synthetic", "train_subset": 40, "val_size": 10,
                          "test_subset": 20, "batch_size": 20, "epochs": 1, "progress": "none",
                          "output_dir": str(output_dir), **overrides})


def started(config):
    run = stages.start(config)
    return run, stages.load(run), stages.build_network(run)


def test_the_training_step_run_again_for_the_same_run_stops_and_names_resume(tmp_path):
    run, data, network = started(tiny(tmp_path / "a"))
    stages.train(run, data, network)
    before = load_checkpoint(run.path("checkpoint.pt"))["model"]
    with pytest.raises(ConfigError, match=r"already trained into output_dir=.*holds epoch 1.*"
                                          r"`resume=True`.*`output_dir=.*a-2'`"):
        stages.train(run, data, stages.build_network(run))
    after = load_checkpoint(run.path("checkpoint.pt"))["model"]
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_a_network_trained_once_is_not_trained_again_under_a_new_label(tmp_path):
    run, data, network = started(tiny(tmp_path / "a"))
    stages.train(run, data, network)
    second = stages.start(tiny(tmp_path / "b"))
    with pytest.raises(ConfigError, match="network is not this run's.*build_network"):
        stages.train(second, data, network)
    assert not os.path.exists(second.path("checkpoint.pt"))
    stages.train(second, data, stages.build_network(second))  # a fresh network trains
    assert load_checkpoint(second.path("checkpoint.pt"))["epoch"] == 1


def test_after_an_interrupt_the_training_step_stops_until_resume_is_set(tmp_path, monkeypatch):
    from test_training import interrupted_in_epoch

    config = tiny(tmp_path, epochs=2)
    run, data, network = started(config)
    interrupted_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        stages.train(run, data, network)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"holds epoch 1\).*`resume=True`"):
        stages.train(run, data, network)
    assert load_checkpoint(run.path("checkpoint.pt"))["epoch"] == 1
    resumed = stages.start(tiny(tmp_path, epochs=2, resume=True))
    result = stages.train(resumed, data, network)  # the same network object: its weights are loaded
    assert result.epochs_completed == 2 and [h["epoch"] for h in result.history] == [1, 2]


def test_an_evaluation_into_the_folder_of_a_finished_evaluation_is_refused(tmp_path):
    weights = str(tmp_path / "model.pt")
    save_weights(weights, NetworkShape().build())
    config = tiny(tmp_path / "eval", model_weights=weights, train_subset=None, val_size=5000,
                  epochs=75, batch_size=256)
    run, data, network = started(config)
    result = stages.load_trained(run, data)
    stages.save_run(run, data, result, stages.evaluate_test(run, data, result))
    with pytest.raises(ConfigError, match=r"holds a finished run \(metrics.json, figures\).*"
                                          r"`output_dir=.*evaluation'`"):
        stages.start(config)


@pytest.fixture
def flip_weights(tmp_path):
    path = str(tmp_path / "model.pt")
    save_weights(path, NetworkShape().build(), TestTimeAugmentation(flip=True))
    return path


def evaluation(tmp_path, weights, **overrides):
    return stages.start(make_config(data_source="synthetic", model_weights=weights,
                                    output_dir=str(tmp_path / "eval"), **overrides))


def test_an_evaluation_uses_the_test_time_augmentation_the_weights_record(tmp_path, flip_weights):
    run = evaluation(tmp_path, flip_weights)
    assert run.tta == (TestTimeAugmentation(flip=True),) and run.recipe.tta.flip
    assert "test-time augmentation: flip (as recorded with the weights)" in stages.describe(run)


@pytest.mark.parametrize("overrides, expected", [
    ({"recipe_overrides": {"tta_flip": False}}, "none (recipe_overrides ['tta_flip'])"),
    ({"recipe": "improved", "recipe_overrides": {"tta_translate": 2}},
     "flip, shifts of ±2 px (recipe_overrides ['tta_translate'])"),
])
def test_parameters_that_choose_a_test_time_augmentation_win_over_the_record(
        tmp_path, flip_weights, overrides, expected):
    assert f"test-time augmentation: {expected}" in stages.describe(
        evaluation(tmp_path, flip_weights, **overrides))


def test_an_ensemble_evaluates_each_member_with_its_own_test_time_augmentation(tmp_path, flip_weights):
    plain = str(tmp_path / "plain.pt")
    save_weights(plain, NetworkShape().build(), TestTimeAugmentation())
    run = evaluation(tmp_path, [flip_weights, plain], test_subset=20)
    data = stages.load(run)
    result = stages.load_trained(run, data)
    metrics = stages.save_run(run, data, result, stages.evaluate_test(run, data, result))
    assert metrics["test_time_augmentation"] == "flip; none"
    assert [m["test_time_augmentation"] for m in metrics["ensemble_members"]] == ["flip", "none"]
    with open(run.path("metrics.json")) as file:
        assert json.load(file)["test_time_augmentation"] == "flip; none"


def test_a_trained_model_records_the_test_time_augmentation_of_its_accuracy(tmp_path):
    run, data, network = started(tiny(tmp_path, recipe="improved"))
    result = stages.train(run, data, network)
    metrics = stages.save_run(run, data, result, stages.evaluate_test(run, data, result))
    assert metrics["test_time_augmentation"] == "flip"
    os.remove(run.path("metrics.json"))  # the record in model.pt alone
    assert read_weights(run.path("model.pt"))[1] == TestTimeAugmentation(flip=True)


def test_on_a_cpu_torch_uses_no_more_threads_than_the_process_may_use_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(stages, "usable_cpus", lambda: 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(max(2, threads))
        stages.start(tiny(tmp_path, device="cpu"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_a_result_of_an_earlier_run_is_not_evaluated_or_saved_as_this_runs(tmp_path, monkeypatch):
    """In a live kernel `result` survives a new run whose training was interrupted."""
    from test_training import interrupted_in_epoch

    first, data, network = started(tiny(tmp_path / "first"))
    result = stages.train(first, data, network)
    second = stages.start(tiny(tmp_path / "second", epochs=2))
    interrupted_in_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        stages.train(second, data, stages.build_network(second))
    for stage in (lambda: stages.evaluate_test(second, data, result),
                  lambda: stages.submit(second, result),
                  lambda: stages.history_table(second, result)):
        with pytest.raises(ConfigError, match=r"this `result` is not this run's.*result = "
                                              r"stages.train\(run, data, network\)"):
            stage()
    # Nothing was written for the second run (start() leaves no empty folder behind either).
    assert not os.path.exists(tmp_path / "second") or not os.listdir(tmp_path / "second")


def test_a_runs_best_pt_evaluates_as_what_it_is_without_the_accuracy_of_its_model_pt(tmp_path):
    """best.pt is the best validation epoch's weights; the accuracy in the metrics.json beside
    it is model.pt's, the final network's."""
    run, data, network = started(tiny(tmp_path / "run", epochs=2, width_multiplier=0.25,
                                      blocks=[1, 1, 1]))
    result = stages.train(run, data, network)
    metrics = stages.save_run(run, data, result, stages.evaluate_test(run, data, result))
    assert metrics["tested_epoch"] == 2 and metrics["best_val_epoch"] in (1, 2)
    best = str(tmp_path / "run" / "best.pt")
    evaluation = stages.start(make_config(data_source="synthetic", test_subset=20,
                                          model_weights=best, output_dir=str(tmp_path / "eval")))
    said = stages.describe(evaluation)
    assert "this is that run's best.pt, not its model.pt, so the test accuracy it recorded is " \
        "not this file's" in said and "95 % interval" not in said
    assert count_parameters(evaluation.weights[0]) == metrics["params"]  # its own size
    model = stages.start(make_config(data_source="synthetic", test_subset=20, output_dir=str(
        tmp_path / "eval-model"), model_weights=str(tmp_path / "run" / "model.pt")))
    assert "; it recorded " in stages.describe(model) and "95 % interval" in stages.describe(model)
