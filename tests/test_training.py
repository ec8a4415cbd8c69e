import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import stages
from helpers.data import load_data
from helpers.evaluation import evaluate
from helpers.files import CheckpointError, DiskFullError, load_checkpoint
from helpers.model import ResNet
from helpers.settings import ConfigError, make_config, recipe_of
from helpers.step import TrainingStep
from helpers.training import ExponentialAverage, make_optimizer, make_scheduler, train_one_epoch


def tiny_config(output_dir, **overrides):
    settings = dict(data_source="synthetic", train_subset=60, val_size=20, batch_size=16,
                    epochs=2, progress="none", output_dir=str(output_dir),
                    figures_dir=str(output_dir), width_multiplier=0.25, blocks=[1, 1, 1])
    if overrides.get("pipeline") == "dataloader":
        settings["num_workers"] = 0  # workers in the test process itself
    return make_config(**{**settings, **overrides})


def tiny_network(seed=0):
    torch.manual_seed(seed)
    return ResNet(blocks=(1, 1), widths=(8, 16), strides=(1, 2), stem_width=8)


def train_tiny(config, data=None):
    """Train a quarter-width network of one block per stage through the stages, as the notebook
    does (a resumed run resumes); returns the run and its result."""
    run = stages.start(config)
    result = stages.train(run, data or load_data(config), stages.build_network(run))
    return run, result


def interrupted_in_epoch(monkeypatch, stopped_epoch):
    """Make the loop's training pass raise KeyboardInterrupt in `stopped_epoch`."""
    from helpers import training

    real = training.train_one_epoch

    def interrupted(step, batches, *, epoch, **kwargs):
        if epoch == stopped_epoch:
            raise KeyboardInterrupt
        return real(step, batches, epoch=epoch, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", interrupted)


@pytest.mark.parametrize("pipeline, recipe", [("fast", "reference"), ("fast", "improved"),
                                              ("dataloader", "reference"), ("dataloader", "improved")])
def test_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, pipeline, recipe):
    whole = tiny_config(tmp_path / "whole", pipeline=pipeline, recipe=recipe)
    train_tiny(whole)
    split = tiny_config(tmp_path / "split", pipeline=pipeline, recipe=recipe, epochs=1)
    train_tiny(split)
    resumed, _ = train_tiny(tiny_config(tmp_path / "split", pipeline=pipeline, recipe=recipe,
                                        resume=True))
    assert resumed.resume_state["epoch"] == 1
    for name in ("checkpoint.pt", "best.pt"):
        expected = load_checkpoint(str(tmp_path / "whole" / name))
        actual = load_checkpoint(str(tmp_path / "split" / name))
        assert expected["model"].keys() == actual["model"].keys()
        for key, tensor in expected["model"].items():
            assert torch.equal(tensor, actual["model"][key]), f"{name}: {key} differs"
    assert len(load_checkpoint(str(tmp_path / "split" / "checkpoint.pt"))["history"]) == 2


def test_resume_with_a_changed_setting_lists_the_differences(tmp_path):
    train_tiny(tiny_config(tmp_path, epochs=1))
    changed = tiny_config(tmp_path, resume=True, batch_size=8, seed=5, recipe="improved")
    with pytest.raises(CheckpointError, match="another configuration") as error:
        stages.start(changed)
    for name in ("batch_size", "seed", "recipe"):
        assert name in str(error.value)


def test_resume_may_raise_epochs_to_train_longer(tmp_path):
    train_tiny(tiny_config(tmp_path, epochs=1))
    _, result = train_tiny(tiny_config(tmp_path, epochs=2, resume=True))
    assert result.epochs_completed == 2 and [h["epoch"] for h in result.history] == [1, 2]


def test_resume_from_a_corrupt_checkpoint_names_the_checkpoint(tmp_path):
    os.makedirs(tmp_path, exist_ok=True)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="checkpoint.*corrupt"):
        stages.start(tiny_config(tmp_path, resume=True))


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        stages.start(tiny_config(tmp_path / "empty", resume=True))


def test_interrupt_keeps_the_last_completed_epoch_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    interrupted_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_config(tmp_path, epochs=3, progress="lines"))
    assert load_checkpoint(str(tmp_path / "checkpoint.pt"))["epoch"] == 1
    assert "to continue, set `resume=True`, the other parameters as they were, and start the run " \
        "again" in capsys.readouterr().out


def test_after_an_interrupt_the_command_line_is_told_its_own_resume_option(tmp_path, monkeypatch, capsys):
    from helpers import env

    monkeypatch.setattr(env, "_run_as_command_line", lambda: True)
    interrupted_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tiny_config(tmp_path, epochs=2, progress="lines"))
    assert "to continue, set `--resume True`, the other parameters as they were, and run the " \
        "command again" in capsys.readouterr().out


def test_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    train_tiny(tiny_config(tmp_path, epochs=3))  # epochs 1-3 fine
    real = stages.start_training

    def poisoned(*args, **kwargs):
        training = real(*args, **kwargs)
        training.loss_fn = lambda logits, labels: F.cross_entropy(logits, labels) * float("nan")
        return training

    monkeypatch.setattr(stages, "start_training", poisoned)
    with pytest.raises(stages.TrainingError, match="epoch 4 by step 1.*lower lr"):
        train_tiny(tiny_config(tmp_path, epochs=4, resume=True))
    assert load_checkpoint(str(tmp_path / "checkpoint.pt"))["epoch"] == 3


def test_best_checkpoint_holds_the_best_validation_epoch(tmp_path):
    _, result = train_tiny(tiny_config(tmp_path, epochs=3))
    best = load_checkpoint(str(tmp_path / "best.pt"))
    accuracies = [h["val_accuracy"] for h in result.history]
    assert best["val_accuracy"] == max(accuracies) == result.best_val_accuracy
    assert best["epoch"] == accuracies.index(max(accuracies)) + 1


def test_without_validation_best_checkpoint_is_the_last_epoch(tmp_path):
    _, result = train_tiny(tiny_config(tmp_path, epochs=2, val_size=0))
    assert load_checkpoint(str(tmp_path / "best.pt"))["epoch"] == 2
    assert result.best_val_accuracy is None


def test_test_accuracy_each_epoch_is_recorded_but_chooses_nothing(tmp_path):
    config = tiny_config(tmp_path / "a", epochs=2, val_size=0, test_each_epoch=True)
    data = load_data(config)
    _, result = train_tiny(config, data)
    images = torch.from_numpy(data.test.images).permute(0, 3, 1, 2)
    final = evaluate(result.network, images, torch.from_numpy(data.test.labels), batch_size=64)
    assert [h["test_accuracy"] for h in result.history][-1] == pytest.approx(final["accuracy"])
    assert load_checkpoint(str(tmp_path / "a" / "best.pt"))["epoch"] == 2
    assert train_tiny(tiny_config(tmp_path / "b", epochs=1))[1].history[0]["test_accuracy"] is None


def test_training_learns_the_synthetic_classes():
    torch.manual_seed(0)
    network = tiny_network()
    data = load_data(make_config(data_source="synthetic", train_subset=200, val_size=0))
    images = torch.from_numpy(data.train.images).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(data.train.labels)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(1, 6):
        metrics = train_one_epoch(TrainingStep(network, optimizer, torch.nn.CrossEntropyLoss()),
                                  [(images[i], labels[i]) for i in torch.randperm(200).split(20)],
                                  epoch=epoch)
    assert metrics["accuracy"] > 60
    raw = torch.from_numpy(data.train.images).permute(0, 3, 1, 2)
    assert evaluate(network, raw, labels, batch_size=64)["accuracy"] > 60


def scheduled_rates(recipe, epochs, steps_per_epoch, calls):
    """(learning rate before each of `calls` scheduler steps, steps per batch?, optimizer)."""
    optimizer = make_optimizer(tiny_network(), recipe)
    scheduler, per_step = make_scheduler(optimizer, recipe, epochs, steps_per_epoch)
    rates = []
    for _ in range(calls):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates, per_step, optimizer


def test_reference_schedule_divides_lr_by_ten_at_each_milestone():
    rates, per_step, _ = scheduled_rates(recipe_of(make_config(milestones=[2, 4], epochs=5)),
                                         5, 10, calls=5)
    assert not per_step and rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_improved_recipe_warms_up_then_decays_to_zero_without_decay_on_bn_and_bias():
    recipe = recipe_of(make_config(recipe="improved", batch_size=512))
    rates, per_step, optimizer = scheduled_rates(recipe, 10, 10, calls=100)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]
    assert all(p.ndim <= 1 for p in optimizer.param_groups[1]["params"])
    assert per_step and recipe.lr == pytest.approx(0.2)
    assert rates[0] < rates[19] == pytest.approx(0.2) and rates[-1] < 0.001


def test_linear_schedule_falls_from_the_peak_to_zero_in_a_straight_line():
    recipe = recipe_of(make_config(recipe="improved", recipe_overrides={
        "schedule": "warmup_linear", "warmup_epochs": 1}))
    rates, _, _ = scheduled_rates(recipe, 5, 10, calls=50)
    decay = rates[10:]
    assert rates[9] == pytest.approx(0.1) and decay[20] == pytest.approx(0.05)
    assert [a - b for a, b in zip(decay, decay[1:])] == pytest.approx([0.1 / 40] * 39)


def test_weight_average_copies_first_then_ramps_its_decay_and_tracks_batchnorm():
    network = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    average = ExponentialAverage(network, decay=0.5)
    weight = network[0].weight
    expected = None
    for n, value in enumerate([1.0, 3.0, -2.0, 5.0]):
        with torch.no_grad():
            weight.fill_(value)
            network[1].num_batches_tracked.fill_(n + 7)
        average.update(network)
        keep = 0.0 if n == 0 else min(0.5, (1 + n) / (10 + n))
        expected = value if expected is None else keep * expected + (1 - keep) * value
        assert torch.allclose(average.module[0].weight, torch.full_like(weight, expected))
        assert int(average.module[1].num_batches_tracked) == n + 7
    restored = ExponentialAverage(network, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 4
    assert torch.equal(restored.module[0].weight, average.module[0].weight)


def test_a_new_run_into_a_training_runs_folder_is_refused_and_names_resume(tmp_path):
    train_tiny(tiny_config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="already holds a training run.*`resume=True`"):
        stages.start(tiny_config(tmp_path, epochs=1))
    assert stages.start(tiny_config(tmp_path, epochs=2, resume=True)).resume_state["epoch"] == 1


def test_resume_with_fewer_epochs_than_were_run_says_the_run_is_complete(tmp_path, capsys):
    train_tiny(tiny_config(tmp_path, epochs=2))
    with pytest.raises(ConfigError, match=r"epochs=1: .* already holds 2 epochs, so that run is "
                                          r"complete\. Set more epochs to train it longer \(e\.g\. "
                                          r"`epochs=3`\)"):
        stages.start(tiny_config(tmp_path, epochs=1, resume=True))
    # Just as many: nothing to train, and the log says so (the weights are evaluated as usual).
    _, result = train_tiny(tiny_config(tmp_path, epochs=2, resume=True, progress="lines"))
    assert result.epochs_completed == 2
    assert "the run is already complete, nothing is trained" in capsys.readouterr().out


def test_a_full_disk_at_checkpoint_time_stops_training_and_says_how_to_resume(tmp_path, monkeypatch):
    import shutil

    from helpers import files

    train_tiny(tiny_config(tmp_path, epochs=3))  # three epochs saved
    full = shutil._ntuple_diskusage(10**9, 10**9, 0)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda folder: full)
    with pytest.raises(DiskFullError) as error:
        train_tiny(tiny_config(tmp_path, epochs=4, resume=True))
    assert "Training stopped in epoch 4; " in str(error.value)
    assert "checkpoint.pt holds epoch 3: with room again, continue with `resume=True`" in str(error.value)
    assert load_checkpoint(str(tmp_path / "checkpoint.pt"))["epoch"] == 3
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_a_full_disk_in_the_first_epoch_says_to_start_again_not_to_resume(tmp_path, monkeypatch):
    import shutil

    from helpers import files

    full = shutil._ntuple_diskusage(10**9, 10**9, 0)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda folder: full)
    with pytest.raises(DiskFullError, match="no epoch was saved: with room again, start the run "
                                            "again as it was") as error:
        train_tiny(tiny_config(tmp_path, epochs=2))
    assert "resume" not in str(error.value) and not os.path.exists(tmp_path / "checkpoint.pt")


def test_a_best_checkpoint_that_does_not_fit_leaves_no_checkpoint_that_names_it(tmp_path, monkeypatch):
    """best.pt is written before checkpoint.pt: a resumed run never takes as best an epoch
    whose best.pt was lost, and writes best.pt again when that epoch is trained again."""
    from helpers import files

    real = files.atomic_write

    def full_for_best(path, write):
        if path.endswith("best.pt") and "epoch 2" in open(tmp_path / "marker").read():
            raise DiskFullError(28, "not enough space to write best.pt")
        return real(path, write)

    (tmp_path / "marker").write_text("epoch 1")
    monkeypatch.setattr(files, "atomic_write", full_for_best)
    train_tiny(tiny_config(tmp_path, epochs=1, val_size=0))
    (tmp_path / "marker").write_text("epoch 2")
    with pytest.raises(DiskFullError, match="holds epoch 1: with room again, continue"):
        train_tiny(tiny_config(tmp_path, epochs=2, val_size=0, resume=True))
    assert load_checkpoint(str(tmp_path / "checkpoint.pt"))["epoch"] == 1
    monkeypatch.undo()
    train_tiny(tiny_config(tmp_path, epochs=2, val_size=0, resume=True))
    assert load_checkpoint(str(tmp_path / "best.pt"))["epoch"] == 2


# --- precision on a CPU -------------------------------------------------------------------------

@pytest.mark.parametrize("flags, native", [
    ("fpu sse avx2 avx512f avx512_bf16 avx512_vnni", True),   # AMD Zen 4, Intel Cooper Lake
    ("fpu sse avx2 avx512f amx_bf16 amx_tile", True),         # Intel Sapphire Rapids
    ("fpu sse avx2 avx512f avx512_vnni", False),              # AVX-512 without BF16: emulated
    ("fpu sse avx2", False),
])
def test_a_cpu_computes_bf16_natively_only_with_avx512_bf16_or_amx(tmp_path, flags, native):
    from helpers.training import cpu_computes_bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_computes_bf16(str(cpuinfo)) is native
    assert cpu_computes_bf16(str(tmp_path / "none")) is False  # macOS, Windows


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_trains_in_bf16_and_channels_last_only_where_the_cpu_computes_bf16(monkeypatch, native):
    from helpers import training

    monkeypatch.setattr(training, "cpu_computes_bf16", lambda: native)
    cpu = torch.device("cpu")
    chosen = training.resolve_amp("auto", cpu)
    assert chosen == (torch.bfloat16 if native else None)
    assert training.uses_channels_last(cpu, chosen) is native
    assert training.resolve_amp("off", cpu) is None and training.resolve_amp("bf16", cpu) == torch.bfloat16
    assert training.evaluation_amp("auto", cpu) is None  # evaluation stays fp32 on a CPU


def test_fp16_on_a_cpu_is_refused_and_emulated_bf16_is_said_to_be_slow(tmp_path, monkeypatch, capsys):
    from helpers import training

    with pytest.raises(ConfigError, match="amp='fp16' trains on a GPU only"):
        stages.start(tiny_config(tmp_path / "a", amp="fp16", device="cpu"))
    monkeypatch.setattr(stages, "cpu_computes_bf16", lambda: False)
    stages.start(tiny_config(tmp_path / "b", amp="bf16", device="cpu"))
    assert "bf16 is emulated here, and training will be slower than in fp32" in capsys.readouterr().out


@pytest.mark.parametrize("native", [True, False])
def test_training_names_records_and_resumes_its_precision_and_memory_format(
        tmp_path, monkeypatch, capsys, native):
    from helpers import training

    monkeypatch.setattr(training, "cpu_computes_bf16", lambda: native)
    precision, memory = ("bf16", "channels_last") if native else ("fp32", "contiguous")
    run, result = train_tiny(tiny_config(tmp_path, epochs=1, progress="lines"))
    assert f"training step: eager (compile='auto' on the CPU, where compiling costs more than it " \
        f"saves), {precision}, {memory}" in capsys.readouterr().out
    metrics = stages.save_run(run, run_data(run), result, stages.evaluate_test(run, run_data(run), result))
    assert (metrics["training_precision"], metrics["memory_format"]) == (precision, memory)
    assert metrics["images_per_second"] > 0 and result.history[0]["images_per_second"] > 0
    saved = load_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert (saved["training_precision"], saved["memory_format"]) == (precision, memory)
    # Resumed on a machine that would choose the other precision: it continues as it began.
    monkeypatch.setattr(training, "cpu_computes_bf16", lambda: not native)
    monkeypatch.setattr(stages, "cpu_computes_bf16", lambda: not native)
    resumed, result = train_tiny(tiny_config(tmp_path, epochs=2, resume=True, progress="lines"))
    assert f"the checkpoint was trained in {precision}, and continues so" in capsys.readouterr().out
    assert result.precision == precision and result.memory_format == memory


def run_data(run):
    return load_data(run.config)


def test_a_network_trained_in_bf16_on_a_cpu_is_tested_and_saved_in_fp32_contiguous(tmp_path, monkeypatch):
    from helpers import training

    monkeypatch.setattr(training, "cpu_computes_bf16", lambda: True)
    run, result = train_tiny(tiny_config(tmp_path, epochs=1))
    weights = [p for p in result.network.parameters() if p.ndim == 4]
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in weights)
    assert stages.predictor(run, result).amp_dtype is None
