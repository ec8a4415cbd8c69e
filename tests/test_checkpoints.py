import os

import pytest
import torch

from helpers.files import (CheckpointError, DiskFullError, atomic_write, atomic_write_json,
                           load_checkpoint, read_weights, save_checkpoint, save_weights)
from helpers.model import NetworkShape, ResNet


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 3, "history": [{"lr": 0.1}]})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 1})

    def half_then_crash(file):
        file.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, half_then_crash)
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temporary file left behind


def test_a_process_killed_midway_leaves_the_previous_file_intact(tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / "metrics.json")
    atomic_write_json(path, {"epoch": 1})
    script = (
        "import os, sys; sys.path.insert(0, %r)\n"
        "from helpers.files import atomic_write\n"
        "def write(file):\n"
        "    file.write(b'{\"epoch\": 2, truncated'); file.flush(); os._exit(9)\n"
        "atomic_write(%r, write)\n" % (os.getcwd(), path))
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    with open(path) as file:
        assert file.read().strip() == '{\n  "epoch": 1\n}'


def test_missing_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(str(tmp_path / "checkpoint.pt"))


def test_an_unreadable_weights_file_is_named_without_advice_to_load_it_unsafely(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x00" * 64)  # torch's safe loader stops at its first byte
    with pytest.raises(CheckpointError) as error:
        read_weights(str(path))
    message = str(error.value)
    assert "is not a readable weights file: damaged (corrupt), or not made by torch.save" in message
    assert "Unsupported operand 0" in message
    assert "weights_only" not in message and "Re-running" not in message


def test_corrupt_checkpoint_is_reported_as_such(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(str(path))


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/should-never-exist",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    torch.save({"model": {}, "evil": Payload()}, path)
    with pytest.raises(CheckpointError, match="would run code named in the file"):
        load_checkpoint(path)


def test_weights_file_is_half_precision_and_loads_with_weights_only(tmp_path):
    torch.manual_seed(0)
    network = NetworkShape().build()
    path = str(tmp_path / "model.pt")
    save_weights(path, network)
    state = torch.load(path, weights_only=True)
    assert state["architecture"] == "resnet"
    assert state["model"]["classifier.weight"].dtype == torch.float16 and os.path.getsize(path) < 10e6
    restored, _ = read_weights(path, "resnet")
    assert torch.allclose(restored.classifier.weight, network.classifier.weight, atol=1e-3)
    assert restored.classifier.weight.dtype == torch.float32


def test_weights_saved_before_architectures_were_recorded_still_load(tmp_path):
    network = ResNet()
    path = str(tmp_path / "old-model.pt")
    torch.save({k: v.half() for k, v in network.state_dict().items()}, path)  # the old format
    restored, views = read_weights(path, "resnet")
    assert views is None
    assert torch.allclose(restored.classifier.weight, network.classifier.weight, atol=1e-3)


def test_weights_of_another_architecture_are_refused_by_name(tmp_path):
    path = str(tmp_path / "model.pt")
    save_weights(path, NetworkShape("se_resnet").build())
    with pytest.raises(CheckpointError, match="holds a 'se_resnet' network, but "
                                              "architecture='resnet': set architecture='se_resnet'"):
        read_weights(path, "resnet")


def _pipeline_config(tmp_path, **overrides):
    from helpers.settings import make_config

    training = {} if "model_weights" in overrides else {"train_subset": 50, "val_size": 0}
    return make_config(**{"data_source": "synthetic", **training, "progress": "none",
                          "output_dir": str(tmp_path / "out"),
                          "figures_dir": str(tmp_path / "figures"), **overrides})


def test_model_weights_evaluate_without_training(tmp_path):
    from helpers import stages
    from helpers.evaluation import predict_logits

    torch.manual_seed(3)
    trained = NetworkShape().build()
    save_weights(str(tmp_path / "model.pt"), trained)
    run = stages.start(_pipeline_config(tmp_path, model_weights=str(tmp_path / "model.pt"),
                                        device="cpu"))
    data = stages.load(run)
    result = stages.load_trained(run, data)
    test = stages.evaluate_test(run, data, result)
    metrics = stages.save_run(run, data, result, test)
    assert result.history == [] and metrics["epochs_completed"] == 0
    assert metrics["evaluated_weights"] == [str(tmp_path / "model.pt")]
    assert metrics["params"] == 4_697_162 and metrics["architecture"] == "resnet"
    assert stages.training_figures(run, data, result) == {}
    images = torch.from_numpy(data.test.images).permute(0, 3, 1, 2)
    expected = predict_logits(trained.half().float(), images, 256).argmax(1).numpy()
    assert (test.predicted == expected).mean() > 0.99  # fp16 weights: ties may flip


@pytest.mark.parametrize("problem, message", [
    ("missing", "no such file"),
    ("garbage", "is not a readable weights file"),
    ("other network", "does not fit this network"),
    ("other architecture", "holds a 'resnext' network"),
    ("with resume", "resume=True has no effect here: model_weights is set"),
    ("into a training run", "holds a training run (checkpoint.pt)"),
])
def test_bad_model_weights_are_refused_at_start(tmp_path, problem, message):
    from helpers import stages
    from helpers.settings import ConfigError

    path = tmp_path / "model.pt"
    if problem == "garbage":
        path.write_bytes(b"not a torch file")
    elif problem == "other network":
        torch.save({"architecture": "resnet", "model": ResNet(blocks=(1, 1), widths=(8, 16), strides=(
            1, 2), stem_width=8).state_dict()}, str(path))
    elif problem == "other architecture":
        save_weights(str(path), NetworkShape("resnext").build())
    elif problem in ("with resume", "into a training run"):
        save_weights(str(path), NetworkShape().build())
    if problem == "into a training run":
        os.makedirs(tmp_path / "out")
        (tmp_path / "out" / "checkpoint.pt").write_bytes(b"a training run's checkpoint")
    with pytest.raises((CheckpointError, ConfigError)) as error:
        stages.start(_pipeline_config(tmp_path, model_weights=str(path),
                                      resume=problem == "with resume"))
    assert message in str(error.value)


# --- weights from elsewhere ---------------------------------------------------------------------

def _reference_state():
    torch.manual_seed(5)
    return ResNet().state_dict()


@pytest.mark.parametrize("wrap", [
    lambda state: {"net": {f"module.{k}": v for k, v in state.items()}, "acc": 93.1, "epoch": 200},
    lambda state: {"state_dict": state, "optimizer": {}},
    lambda state: {"model_state_dict": {f"_orig_mod.{k}": v for k, v in state.items()}},
    lambda state: {f"module.{k}": v for k, v in state.items()},
])
def test_weights_saved_by_other_code_are_unwrapped_and_load(tmp_path, wrap):
    state = _reference_state()
    path = str(tmp_path / "elsewhere.pt")
    torch.save(wrap(state), path)
    loaded, _ = read_weights(path, "resnet")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_a_whole_pickled_model_is_refused_in_two_lines_naming_its_class(tmp_path):
    path = str(tmp_path / "whole.pt")
    torch.save(ResNet(), path)
    with pytest.raises(CheckpointError) as error:
        read_weights(path)
    message = str(error.value)
    assert "helpers.model.ResNet" in message and "torch.save(model.state_dict()" in message
    assert "weights_only=False" not in message and len(message) < 400


def test_another_networks_weights_say_how_many_tensors_match_with_an_example_of_each_kind(tmp_path):
    state = _reference_state()
    state["classifier.weight"] = torch.zeros(100, 256)    # a CIFAR-100 head
    state["extra.weight"] = torch.zeros(3)
    del state["stem.0.weight"]
    path = str(tmp_path / "other.pt")
    torch.save({"net": state}, path)
    with pytest.raises(CheckpointError) as error:
        read_weights(path)
    message = str(error.value)
    assert "150 of the network's 152 tensors match the file's 152" in message
    assert "1 missing (e.g. 'stem.0.weight')" in message and "(e.g. 'extra.weight')" in message
    assert "'classifier.weight': [100, 256] in the file, [10, 256] here" in message
    assert len(message) < 600 and "\n" not in message


def test_a_file_without_weights_says_what_it_holds(tmp_path):
    path = str(tmp_path / "results.pt")
    torch.save({"accuracy": 93.4, "epoch": 75}, path)
    with pytest.raises(CheckpointError, match=r"holds a dict with keys \['accuracy', 'epoch'\], "
                                              "and no network weights"):
        read_weights(path)


def test_a_disk_without_room_for_the_file_is_named_with_the_size_before_anything_is_written(
        tmp_path, monkeypatch):
    import shutil

    from helpers import files

    path = str(tmp_path / "checkpoint.pt")
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 1})
    monkeypatch.setattr(files.shutil, "disk_usage",
                        lambda folder: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    with pytest.raises(DiskFullError) as error:
        save_checkpoint(path, {"model": {"w": torch.zeros(10_000)}, "epoch": 2})
    message = str(error.value)
    assert "not enough space to write checkpoint.pt into" in message and str(tmp_path) in message
    assert "it needs 0.0" in message and "0.0 MB free there" in message
    assert "the previous checkpoint.pt is intact" in message and "[Errno" not in message
    assert load_checkpoint(path)["epoch"] == 1 and os.listdir(tmp_path) == ["checkpoint.pt"]


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT"])
def test_a_write_refused_for_space_midway_leaves_no_partial_file(tmp_path, monkeypatch, code):
    import errno

    from helpers import files

    path = str(tmp_path / "metrics.json")
    atomic_write_json(path, {"epoch": 1})

    def refuse(descriptor):  # a quota or a network disk says so only when the data is flushed
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(files.os, "fsync", refuse)
    with pytest.raises(DiskFullError, match=r"not enough space to write metrics.json .*it needs"):
        atomic_write_json(path, {"epoch": 2})
    assert os.listdir(tmp_path) == ["metrics.json"]
    monkeypatch.undo()
    assert open(path).read() == '{\n  "epoch": 1\n}\n'


def test_random_states_saved_with_more_gpus_restore_on_a_machine_with_fewer(monkeypatch):
    from helpers.training import restore_rng_states, rng_states

    states = rng_states()
    states["cuda"] = [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append(device))
    restore_rng_states(states)
    assert restored == [0]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # more GPUs than were saved
    restored.clear()
    restore_rng_states(states)
    assert restored == [0, 1]
