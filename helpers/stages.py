"""The pipeline's stages, in the order the notebook and `python -m helpers.cli` call them:

    run = start(config)                    every check that can be made before any work
    data = load(run)                       data, subsets, validation split, what the images are
    network = build_network(run)           the chosen network, seeded, under the parameter budget
    result = train(run, data, network)     the recipe's epochs, with checkpoints; or, with
    result = load_trained(run, data)       model_weights set, those weights instead
    test = evaluate_test(run, data, result)
    submit(run, result)                    the Kaggle CSV, when kaggle_test_pkl is set
    metrics = save_run(run, data, result, test)   metrics.json, and model.pt after training

Each stage checks what it is given at its door, then calls the method (helpers/training.py,
helpers/evaluation.py, ...). A Run records what its stages made (its network, what it trained,
its result), so that a notebook cell run again, or a cell of an earlier run, cannot file one
run's work under another's name.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from . import model as networks
from . import plots, report
from .augment import (augment_batch, draw_parameters, epoch_batches, epoch_generator,
                      to_device_tensors)
from .data import CifarData, load_data, summarize
from .distributed import DistributedContext, init_distributed, main_rank_first
from .env import (PAPERMILL, DisplayedText, ExplainedError, in_notebook, keep_freed_memory,
                  launcher, progress_bar, progress_mode, rerun_hint, setting, usable_cpus)
from .evaluation import Ensemble, TestEvaluation, average_probabilities, from_logits
from .files import (CheckpointError, DiskFullError, atomic_write_json, load_checkpoint, read_weights,
                    run_record, save_checkpoint, save_weights)
from .inference import Predictor, load_kaggle_test, predict, views_text, write_submission
from .model import PARAMETER_BUDGET, REFERENCE_PARAMETER_COUNT, NetworkShape, count_parameters
from .recipes import TTA_SETTINGS, Recipe, TestTimeAugmentation
from .settings import (PARAMETERS, ConfigError, RunConfig, _require, config_differences,
                       recipe_of)
from .step import EAGER, TrainingStep, eager_reason
from .training import (NonFiniteLossError, Training, TrainingResult, cpu_computes_bf16,
                       epoch_source, evaluation_amp, fit, make_optimizer, make_scheduler,
                       precision_name, resolve_amp, resume, rng_states, start_training,
                       train_one_epoch, training_state, uses_channels_last)


class TrainingError(ExplainedError, RuntimeError):
    """Training cannot go on (the loss diverged); the message says what to change."""


@dataclass
class Run:
    """A validated config with everything resolved from it, and what its stages made.
    `tta`: the test-time augmentation of each evaluated network (one; with model_weights, one
    per file, loaded at start into `weights`)."""

    config: RunConfig
    recipe: Recipe
    device: torch.device
    context: DistributedContext
    resume_state: Optional[dict] = None
    tta: Tuple[TestTimeAugmentation, ...] = ()
    tta_source: str = "the recipe"
    weights: List[nn.Module] = field(default_factory=list)
    network: Optional[nn.Module] = None          # built by build_network
    trained: Optional[nn.Module] = None          # the network train() began to train
    result: Optional[TrainingResult] = None      # train()'s or load_trained()'s
    submission: Optional[dict] = None            # what submit() wrote
    shift: Optional[dict] = None                 # evaluate_under_shift()'s accuracies

    def path(self, name: str) -> str:
        return os.path.join(self.config.output_dir, name)


# --- start: every check before any work -----------------------------------------------------

def start(config: RunConfig) -> Run:
    """Resolve device, recipe and ranks; check outputs, weights files, the resume checkpoint and
    the Kaggle pickle now, so that a mistake costs seconds, not a training run."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if config.device == "auto" else config.device)
    if device.type == "cpu" and torch.get_num_threads() > usable_cpus():
        # torch starts a thread per core of the host; in a container allowed fewer CPUs, the
        # extra threads only wait for each other.
        torch.set_num_threads(usable_cpus())
    context = init_distributed(device.type == "cuda")
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if device.type == "cpu" and config.amp == "fp16" and not config.evaluate_only:
        raise ConfigError("amp='fp16' trains on a GPU only: on a CPU, fp16 has no fast kernels "
                          "and no gradient scaling here; use amp='bf16' (fast where the CPU "
                          "computes bf16 natively), or 'auto' or 'off'")
    if device.type == "cpu" and config.amp == "bf16" and not cpu_computes_bf16() \
            and not config.evaluate_only:
        print("amp='bf16' on a CPU without native bf16 (AVX-512 BF16 or AMX): bf16 is emulated "
              "here, and training will be slower than in fp32 (amp='auto' or 'off')")
    _require(config.batch_size % context.world_size == 0,
             f"batch_size={config.batch_size} must be divisible by the {context.world_size} ranks "
             "(it is the global batch)")
    if context.is_main:  # only rank 0 writes; two ranks checking one new folder race
        check_writable("output_dir", config.output_dir)  # (one removes what the other made)
        check_writable("figures_dir", config.figures_folder)
    shape = NetworkShape(config.architecture, config.width_multiplier, config.blocks)
    check_parameter_budget(shape.build(), f"architecture={shape}")
    if config.kaggle_test_pkl is not None:
        load_kaggle_test(config.kaggle_test_pkl)
    check_output_folder(config)
    weights = [read_weights(path, config.architecture) for path in config.model_weights or ()]
    if config.quantize == "int8":
        from .options.quantization import check_quantizable
        check_quantizable([network for network, _ in weights], config.model_weights or ())
    for path in config.teacher_weights or ():
        read_weights(path, None, "teacher_weights")
    recipe = recipe_of(config)
    tta, tta_source = (recipe.tta,), f"recipe={recipe.name!r}"
    if config.evaluate_only:
        recipe, tta, tta_source = evaluation_tta(config, recipe, [views for _, views in weights])
    if config.teacher_weights is not None and not recipe.distill_weight:
        raise ConfigError("teacher_weights is set, but the recipe's distill_weight is 0, so the "
                          "teacher would change nothing: give its loss a weight in (0, 1], e.g. "
                          f"{setting('recipe_overrides', {'distill_weight': 0.5})}")
    if config.teacher_weights is None and recipe.distill_weight:
        raise ConfigError(f"recipe_overrides['distill_weight']={recipe.distill_weight} needs "
                          "teacher_weights: the model.pt file(s) to learn from")
    resume_state = resumable_checkpoint(config) if config.resume else None
    return Run(config, recipe, device, context, resume_state, tta, tta_source,
               [network for network, _ in weights])


def check_writable(name: str, folder: str) -> None:
    """Fail now, not after an hour of training, if `folder` cannot be created or written. The
    folders made to find out are removed again (every write makes its folder), so that a run
    stopped by a later check, such as a data error, leaves no empty folder behind."""
    made, above = [], os.path.abspath(folder)
    while not os.path.exists(above):
        made, above = made + [above], os.path.dirname(above)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{name}={folder!r} is not a writable folder: {error.strerror}") from None
    finally:
        for path in made:  # the deepest first; one that something wrote into meanwhile stays
            with contextlib.suppress(OSError):
                os.rmdir(path)


def check_parameter_budget(network: nn.Module, name: str) -> int:
    """The parameter count, or a ConfigError naming it if it is not under PARAMETER_BUDGET."""
    params = count_parameters(network)
    _require(params < PARAMETER_BUDGET, f"{name} has {params:,} trainable parameters; the "
                                        f"assignment allows fewer than {PARAMETER_BUDGET:,}")
    return params


def evaluation_tta(config: RunConfig, recipe: Recipe, recorded: List[Optional[TestTimeAugmentation]]
                   ) -> Tuple[Recipe, Tuple[TestTimeAugmentation, ...], str]:
    """(recipe, test-time augmentation per weights file, where it comes from) of an evaluation:
    what each file's run recorded, unless the parameters choose (recipe set, or recipe_overrides
    of tta_flip / tta_translate). The recipe's views become those used, where all members share
    them, so that metrics.json records what was measured."""
    chosen = [name for name in TTA_SETTINGS if name in (config.recipe_overrides or {})]
    if config.recipe != PARAMETERS["recipe"].default or chosen:
        source = ", ".join([f"recipe={config.recipe!r}"] * (not chosen) +
                           [f"recipe_overrides {chosen}"] * bool(chosen))
        return recipe, (recipe.tta,) * len(config.model_weights), source
    tta = tuple(views or recipe.tta for views in recorded)
    source = ("as recorded with the weights" if all(recorded) else
              f"not recorded with {sum(v is None for v in recorded)} of the weights: none there")
    if len(set(tta)) == 1:
        recipe = dataclasses.replace(recipe, tta=tta[0])
    return recipe, tta, source


def check_output_folder(config: RunConfig) -> None:
    """Never write over a finished run's files (a training run's checkpoint, model.pt and
    metrics.json; an evaluation's metrics.json and figures), except to continue a training
    run (resume=True, whose checkpoint resumable_checkpoint checks)."""
    folder = config.output_dir
    training_run = os.path.exists(os.path.join(folder, "checkpoint.pt"))
    if config.resume or not (training_run or os.path.exists(os.path.join(folder, "metrics.json"))):
        return
    # A sibling, not a folder inside the finished run's.
    elsewhere = setting("output_dir", folder.rstrip("/\\") + ("-evaluation" if config.evaluate_only
                                                              else "-2"))
    # papermill writes its output notebook before the first cell runs: one inside this folder
    # already holds this refusal, and nothing here can keep it.
    report_note = (" (papermill has already replaced its output notebook, if you named the "
                   "earlier run's: give each run its own)" if launcher() == PAPERMILL else "")
    if training_run and config.evaluate_only:
        raise ConfigError(f"output_dir={folder!r} holds a training run (checkpoint.pt); "
                          "evaluating model_weights there would overwrite its metrics.json "
                          f"and figures: set another folder, e.g. {elsewhere}{report_note}")
    if training_run:
        raise ConfigError(f"output_dir={folder!r} already holds a training run (checkpoint.pt); "
                          "a new run would overwrite its checkpoint, model.pt and metrics.json. "
                          f"Continue it with {setting('resume', True)} (raise epochs to train "
                          f"longer), or set another folder, e.g. {elsewhere}, or delete that "
                          f"folder to start over{report_note}")
    raise ConfigError(f"output_dir={folder!r} holds a finished run (metrics.json, figures); "
                      f"a new run would replace them: set another folder, e.g. {elsewhere}, "
                      f"or delete that folder to run there again{report_note}")


def resumable_checkpoint(config: RunConfig) -> Dict[str, Any]:
    """output_dir/checkpoint.pt, after checking that it continues the run `config` describes
    and has epochs left to train."""
    path = os.path.join(config.output_dir, "checkpoint.pt")
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path!r}: nothing to resume (train it first, "
                              f"with {setting('resume', False)}, or point output_dir at the "
                              "earlier run)")
    state = load_checkpoint(path)
    differences = config_differences(state.get("config", {}), config)
    if differences:
        raise CheckpointError(f"checkpoint {path!r} comes from another configuration, so "
                              f"resuming would not continue that run ({'; '.join(differences)}): "
                              "set those as the checkpoint has them to continue it, or start a "
                              f"new run in another folder ({setting('resume', False)} and another "
                              "output_dir)")
    done = state["epoch"]
    if done > config.epochs:
        raise ConfigError(f"resume=True, epochs={config.epochs}: {path!r} already holds {done} "
                          f"epochs, so that run is complete. Set more epochs to train it longer "
                          f"(e.g. {setting('epochs', done + 1)}), or evaluate its model.pt with "
                          f"{setting('model_weights', os.path.join(config.output_dir, 'model.pt'))}"
                          f" and {setting('resume', False)}")
    return state


# --- data and network -----------------------------------------------------------------------

def load(run: Run) -> CifarData:
    """The run's data (load_data); under torchrun, rank 0 downloads the images while the other
    ranks wait, then they read what it left."""
    started = time.perf_counter()
    with main_rank_first(run.context):
        data = load_data(run.config)
    if run.context.is_main:
        print(summarize(data))
        print(f"loaded in {time.perf_counter() - started:.1f} s")
    return data


def build_network(run: Run) -> nn.Module:
    """The run's network, initialised from the run's seed; its size is checked."""
    config = run.config
    torch.manual_seed(config.seed)
    shape = NetworkShape(config.architecture, config.width_multiplier, config.blocks)
    network = shape.build()
    params = check_parameter_budget(network, f"architecture={shape}")
    if shape == NetworkShape():
        assert params == REFERENCE_PARAMETER_COUNT, f"{params:,} parameters, expected 4,697,162"
    run.network = network
    return network


def model_source(architecture: str) -> str:
    """The source of the shortcut and the classes that define `architecture`, as they are in
    helpers/model.py."""
    blocks = {"resnet": [networks.BasicBlock],
              "se_resnet": [networks.SqueezeExcitation, networks.BasicBlock],
              "resnext": [networks.ResNeXtBlock]}[architecture]
    return "\n\n".join(inspect.getsource(code)
                        for code in [networks.projection, *blocks, networks.ResNet])


def model_table(network: nn.Module) -> str:
    return networks.format_layer_table(networks.layer_table(network))


def training_source() -> str:
    """The training step, the optimizer, the schedule and the loop with what feeds it, as they
    are in their modules (helpers/step.py, helpers/training.py)."""
    return "\n\n".join(inspect.getsource(code) for code in (
        TrainingStep, make_optimizer, make_scheduler, train_one_epoch, epoch_source, fit))


# --- training -------------------------------------------------------------------------------

def train(run: Run, data: CifarData, network: nn.Module) -> TrainingResult:
    """Train this run's network with its recipe. Run again for the same run (a notebook cell
    run twice), it stops and says what to do: training again would write over the files of
    what it trained the first time."""
    config = run.config
    _require(not config.evaluate_only, "model_weights is set, so this run evaluates those "
                                       "weights and trains nothing: result = "
                                       "stages.load_trained(run, data)")
    if run.trained is not None:
        raise ConfigError(f"this run has already trained into output_dir={config.output_dir!r} ("
                          f"{_checkpoint_epoch(run)}): training again would overwrite it. To "
                          f"continue it, set {setting('resume', True)} and {rerun_hint()}; to "
                          f"train anew, set another folder, e.g. "
                          f"{setting('output_dir', config.output_dir + '-2')}, and {rerun_hint()}")
    # Resuming loads the checkpoint's weights into whatever network it is given.
    _require(network is run.network or run.resume_state is not None,
             "this network is not this run's: an earlier run built it and may have trained it. "
             "Build this run's network first (the notebook's Model cell, network = "
             "stages.build_network(run)), so that training starts from the seed's initial weights")
    check_output_folder(config)  # again: another run may have written there since start()
    run.trained = network
    teacher = None
    if config.teacher_weights is not None:
        teachers = [read_weights(path, None, "teacher_weights")[0] for path in config.teacher_weights]
        teacher = teachers[0] if len(teachers) == 1 else Ensemble(teachers)
    run.result = quantized(run, data, _fit(run, data, network, teacher))
    return run.result


def _fit(run: Run, data: CifarData, network: nn.Module, teacher: Optional[nn.Module]) -> TrainingResult:
    """The epoch loop (helpers/training.py's fit) with this run's data, and around it what is
    not the method: checkpoints, the epoch lines, the progress bar, the interrupt message."""
    config, device, context = run.config, run.device, run.context
    # Every epoch has the same batch sizes, in another order of images: epoch 0's.
    sizes = [len(b) for b in epoch_batches(len(data.train), config.batch_size,
                                           epoch_generator(0, 0), 0, context.world_size)]
    steps = len(sizes)
    shown = progress_mode(config.progress) if context.is_main else "none"

    def log(message: str) -> None:
        if shown != "none":
            print(message, flush=True)

    if device.type == "cpu":
        keep_freed_memory()  # the system time of page faults, in every CPU training step
    amp_dtype, channels_last = training_precision(run, log)
    training = start_training(network, run.recipe, epochs=config.epochs, steps_per_epoch=steps,
                              device=device, amp_dtype=amp_dtype, channels_last=channels_last,
                              context=context, teacher=teacher)
    if run.resume_state is not None:
        _resume(run, training, log)
    workers = usable_cpus() if config.num_workers is None else config.num_workers
    warmup_s = _prepare_step(run, training, data, log, workers, sizes)
    bar = DisplayedText() if in_notebook() else None  # one bar per cell, updated in place

    def progress(batches, epoch: int):
        return progress_bar(batches, steps, f"epoch {epoch}/{config.epochs}", bar)

    epochs = fit(training, run.recipe, (data.train.images, data.train.labels),
                 (data.val.images, data.val.labels), epochs=config.epochs,
                 batch_size=config.batch_size, seed=config.seed, device=device,
                 pipeline=config.pipeline, num_workers=workers,
                 eval_batch_size=config.eval_batch_size,
                 # Testing after every epoch draws time-to-accuracy figures; it chooses nothing.
                 test=(data.test.images, data.test.labels) if config.test_each_epoch else None,
                 progress=progress if shown == "bar" else None, context=context)
    started = time.perf_counter()
    try:
        for entry, is_best in epochs:
            log(report.format_epoch(entry, config.epochs))
            if context.is_main:
                save_epoch(run, training, is_best)
    except KeyboardInterrupt:
        done = training.epoch
        log(f"\nInterrupted during epoch {done + 1}. "
            + (f"{run.path('checkpoint.pt')} holds epoch {done}; to continue, set "
               f"{setting('resume', True)}, the other parameters as they were, and {rerun_hint()}."
               if done >= 1 else "No epoch was completed."))
        raise
    except NonFiniteLossError as error:
        raise TrainingError(f"{error}; the run is stopped and checkpoint.pt still holds the last "
                            "completed epoch. The learning rate is probably too high for this "
                            "batch size: lower lr (e.g. by 10x) and run again.") from None
    evaluated = training.evaluated_network
    if device.type == "cpu":  # tested, saved and predicting as every fp32 network on a CPU
        evaluated = evaluated.to(memory_format=torch.contiguous_format)
    return TrainingResult(evaluated, training.history, training.best_val_accuracy,
                          len(training.history), time.perf_counter() - started,
                          training.step.kind, warmup_s, precision=precision_name(amp_dtype),
                          memory_format="channels_last" if channels_last else "contiguous")


def training_precision(run: Run, log) -> Tuple[Optional[torch.dtype], bool]:
    """(autocast dtype, channels_last) of training: what `amp` chooses on this machine, or, when
    resuming, what the checkpoint was trained with (said where this machine would choose
    otherwise), so that a resumed run continues as it began."""
    amp_dtype = resolve_amp(run.config.amp, run.device)
    recorded = (run.resume_state or {}).get("training_precision")
    if recorded is not None and recorded != precision_name(amp_dtype):
        log(f"the checkpoint was trained in {recorded}, and continues so, although "
            f"amp={run.config.amp!r} chooses {precision_name(amp_dtype)} on this machine")
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recorded)
    return amp_dtype, uses_channels_last(run.device, amp_dtype)


def _resume(run: Run, training: Training, log) -> None:
    """Continue from the checkpoint start() checked, as if the run had never stopped."""
    path, state = run.path("checkpoint.pt"), run.resume_state
    try:
        resume(training, state)
    except (KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path!r} does not fit this model and recipe: {error}") from None
    epochs = run.config.epochs
    if training.epoch >= epochs:
        log(f"{path} holds all {epochs} epochs: the run is already complete, nothing is trained "
            f"(set epochs above {epochs} to train longer); its weights are evaluated below")
    else:
        log(f"resumed from {path} after epoch {state['epoch']} of {epochs}")


def _prepare_step(run: Run, training: Training, data: CifarData, log, workers: int,
                  sizes: List[int]) -> float:
    """The training step `compile` asks for on this machine, compiled now, on a batch that
    training never uses (epoch 0's), so its cost is not in any epoch's time; returns that cost
    in seconds. The eager step needs no preparation, nor helpers/options/compiled_step.py."""
    config, context = run.config, run.context
    why = eager_reason(config.compile, run.device)
    warmup_s, fallbacks = 0.0, []
    if why is not None:
        training.step = training.make_step()
    else:
        from .options.compiled_step import choose_step_kind, prepare_step

        kind, why = choose_step_kind(config.compile, run.device, scaler=training.scaler,
                                     distributed=context.enabled,
                                     distillation=training.distillation is not None)
        source = epoch_source(data.train.images, data.train.labels, run.recipe.augmentation,
                              batch_size=config.batch_size, seed=config.seed, device=run.device,
                              pipeline=config.pipeline, num_workers=workers, context=context)
        batch = next(iter(source(0))) if kind != EAGER else None
        training.step, warmup_s, fallbacks = prepare_step(kind, training.make_step, batch,
                                                          sorted(set(sizes), reverse=True))
    warmed = f", {warmup_s:.1f} s to compile before epoch 1" if warmup_s else ""
    loading = f"; {workers} DataLoader workers" if config.pipeline == "dataloader" else ""
    memory = "channels_last" if training.channels_last else "contiguous"
    log(f"training step: {training.step.kind} ({why}{warmed}), "
        f"{precision_name(training.amp_dtype)}, {memory}{loading}"
        + "".join(f"\n  {note}" for note in fallbacks))
    return warmup_s


def save_epoch(run: Run, training: Training, is_best: bool) -> None:
    """best.pt on a new best validation accuracy (or, without a validation split, every epoch,
    so it holds the last), then checkpoint.pt every epoch: a checkpoint never records a best
    epoch whose best.pt is missing. best.pt is kept for the reader; the test measures the final
    network, as the report did."""
    epoch, config = training.epoch, run.config
    try:
        if is_best:
            save_checkpoint(run.path("best.pt"), {
                "model": training.evaluated_network.state_dict(), "epoch": epoch,
                "val_accuracy": training.history[-1]["val_accuracy"], "config": config.to_dict()})
        save_checkpoint(run.path("checkpoint.pt"), {
            **training_state(training), "config": config.to_dict(),
            "recipe": run.recipe.to_dict(), "rng": rng_states()})
    except DiskFullError as error:
        # The previous epoch's checkpoint (or the one resumed from) is on disk, intact.
        then = (f"{run.path('checkpoint.pt')} holds epoch {epoch - 1}: with room again, continue "
                f"with {setting('resume', True)}" if epoch > 1 else
                "no epoch was saved: with room again, start the run again as it was")
        raise DiskFullError(error.errno, f"{error}. Training stopped in epoch {epoch}; {then}") from None


def _checkpoint_epoch(run: Run) -> str:
    path = run.path("checkpoint.pt")
    if not os.path.exists(path):
        return "no epoch finished"
    return f"{path} holds epoch {load_checkpoint(path)['epoch']}"


def quantized(run: Run, data: CifarData, result: TrainingResult) -> TrainingResult:
    """The result with its network replaced by the int8 version (quantize='int8'), its
    activation ranges observed on training images only; unchanged otherwise."""
    if run.config.quantize != "int8":
        return result
    from .options.calibration import calibration_set
    from .options.quantization import quantize_calibrated

    network = result.members[0] if result.members else result.network
    calibration, described = calibration_set(run.config, data)
    int8 = quantize_calibrated(network, calibration.images, described, run.config.eval_batch_size)
    return dataclasses.replace(result, network=int8, members=[int8] if result.members else [])


def load_trained(run: Run, data: CifarData) -> TrainingResult:
    """The networks of model_weights (read at start), in place of training: one, or an
    ensemble averaging their probabilities; int8 with quantize='int8'."""
    config = run.config
    _require(config.evaluate_only, "model_weights is not set, so there are no trained weights to "
                                   "load: train this run's network, result = stages.train(run, "
                                   "data, network)")
    print(f"loaded {', '.join(config.model_weights)}: no training in this run")
    members = run.weights
    evaluated = members[0] if len(members) == 1 else Ensemble(members)
    run.result = quantized(run, data, TrainingResult(evaluated.to(run.device), members=members))
    return run.result


def _check_owned(run: Run, result: TrainingResult) -> None:
    """A notebook kernel keeps `result` from an earlier run when a new run's training cell was
    interrupted or skipped; evaluating or saving it would file that run under this one."""
    _require(run.result is result,
             "this `result` is not this run's (it comes from an earlier run, or this run's "
             "training step did not finish): run this run's training step first, result = "
             "stages.train(run, data, network), so that nothing of another run is written into "
             f"output_dir={run.config.output_dir!r}")


# --- evaluation, submission, files ----------------------------------------------------------

def predictor(run: Run, result: TrainingResult) -> Predictor:
    """The trained network, or the loaded weights, each with the run's test-time augmentation:
    what the test accuracy measures and what labels submission.csv."""
    members = [member.to(run.device) for member in result.members] or [result.network.to(run.device)]
    return Predictor(list(zip(members, run.tta)), run.config.eval_batch_size,
                     evaluation_amp(run.config.amp, run.device))


def evaluate_test(run: Run, data: CifarData, result: TrainingResult) -> TestEvaluation:
    """Evaluate the final model once on the test images (never used for any choice); an
    ensemble's members are evaluated alone as well."""
    _check_owned(run, result)
    images, labels = to_device_tensors(data.test.images, data.test.labels, run.device)
    # Each member's (test-time augmented) logits once; an ensemble averages their softmax.
    member_logits = predictor(run, result).member_logits(images)
    if len(member_logits) == 1:
        return from_logits(member_logits[0], labels)
    return from_logits(average_probabilities(member_logits), labels,
                       [from_logits(logits, labels).accuracy for logits in member_logits])


def evaluate_under_shift(run: Run, data: CifarData, result: TrainingResult) -> Optional[dict]:
    """With corruptions=True: the evaluated network (or ensemble, or int8 network), with its
    test-time augmentation, on corrupted copies of the test images (helpers/options/
    corruptions.py's accuracy_under_shift); rank 0 only. Returns what metrics.json records as
    "corruptions" (accuracies in percent); None with corruptions=False."""
    _check_owned(run, result)
    if not run.config.corruptions or not run.context.is_main:
        return None
    from .options.corruptions import accuracy_under_shift

    model = predictor(run, result)
    run.shift = accuracy_under_shift(lambda images: predict(model, images), data.test.images,
                                     data.test.labels,
                                     show=progress_mode(run.config.progress) != "none")
    return run.shift


def submit(run: Run, result: TrainingResult) -> str:
    """Label the Kaggle pickle's images into output_dir/submission.csv (when asked), the way
    the test accuracy was measured; returns what was written, with its test-time augmentation."""
    _check_owned(run, result)
    if run.config.kaggle_test_pkl is None:
        return "kaggle_test_pkl not set: no submission written"
    model = predictor(run, result)
    if run.context.is_main:
        images, ids = load_kaggle_test(run.config.kaggle_test_pkl)
        write_submission(run.path("submission.csv"), ids, predict(model, images))
        run.submission = {"path": run.path("submission.csv"), "images": len(ids),
                          "test_time_augmentation": model.test_time_augmentation}
    return (f"wrote {run.path('submission.csv')}: labels of {run.submission['images']:,} images, "
            f"with the test-time augmentation of the test accuracy "
            f"({model.test_time_augmentation})") if run.submission else ""


def save_run(run: Run, data: CifarData, result: TrainingResult, test: TestEvaluation) -> dict:
    """Write metrics.json and, after training, model.pt (the evaluated weights in half
    precision) and, with quantize='int8', model-int8.pt; rank 0 only. Returns the metrics."""
    _check_owned(run, result)
    network = result.members[0] if result.members else result.network
    metrics = report.build_metrics(config=run.config, recipe=run.recipe, data=data,
                                   device=run.device, params=count_parameters(network),
                                   result=result, test=test)
    shape = getattr(network, "shape", None) or NetworkShape()
    metrics.update(width_multiplier=shape.width_multiplier, blocks=list(shape.blocks),
                   quantization=dict(network.record) if hasattr(network, "int8_state") else None,
                   test_time_augmentation=views_text(run.tta))
    for member, tta in zip(metrics.get("ensemble_members", []), run.tta):
        member["test_time_augmentation"] = str(tta)
    if run.submission:
        metrics["submission"] = {**run.submission, "path": "submission.csv"}
    if run.shift:
        metrics["corruptions"] = run.shift
    if run.context.is_main:
        if run.config.quantize == "int8":  # the tested int8 network, a weights file like model.pt
            metrics["quantization"]["file_bytes"] = save_weights(run.path("model-int8.pt"), network,
                                                                 run.tta[0])
        atomic_write_json(run.path("metrics.json"), metrics)
        if not run.config.evaluate_only:  # an evaluation has nothing new to save
            save_weights(run.path("model.pt"), getattr(result.network, "float_network", None)
                         or result.network, run.tta[0])
        print(report.summary(metrics))
    return metrics


# --- what the run does and did, in words ----------------------------------------------------

def heading(run: Run) -> report.MarkdownText:
    """What this run does, in a sentence, and the parameters set away from their defaults."""
    config, shown = run.config, run.config.to_dict()
    changed = [f"`{name}={shown[name]!r}`" for name, declared in PARAMETERS.items()
               if getattr(config, name) != declared.default]
    resumed = run.resume_state["epoch"] if run.resume_state is not None else None
    return report.heading(config, run.recipe.name, resumed, changed)


def describe(run: Run) -> str:
    """The run's recipe, every setting resolved; or, for an evaluation, the run that trained
    each weights file (from the metrics.json beside it) and the test-time augmentation used."""
    lines = [f"device: {run.device}" + (f" (rank {run.context.rank} of {run.context.world_size})"
                                        if run.context.enabled else "")]
    if run.config.evaluate_only:
        for path, tta in zip(run.config.model_weights, run.tta):
            lines += [f"evaluating {path}, not trained here: {report.trained_by(path)}",
                      f"  test-time augmentation: {tta} ({run.tta_source})"]
    else:
        lines += [f"{name:<20} {value!r}" for name, value in run.recipe.to_dict().items()]
    if run.config.quantize == "int8":
        lines.append(f"quantize='int8': the tested network is int8, calibrated on "
                     f"{run.config.calibration_images:,} training images, and computes on the "
                     "CPU (quantized kernels exist only there), whatever `device` says")
    if run.config.data_source == "synthetic":
        lines.insert(0, f"*** {report.SYNTHETIC_WARNING} ***")
    return "\n".join(lines)


def quality_report(run: Run, data: CifarData, test: TestEvaluation) -> str:
    """Accuracy, calibration error, per-class precision/recall/F1, and ensemble members."""
    return report.quality_report(test, data.origins["test"].name, data.classes,
                                 run.config.model_weights or ())


def confusions(run: Run, data: CifarData, test: TestEvaluation) -> report.MarkdownText:
    """What this run's confusion matrix shows, in a sentence."""
    return report.confusions(test.labels, test.predicted, data.classes)


def conclusions(run: Run, data: CifarData, metrics: dict,
                results_dir: Optional[str] = None) -> report.MarkdownText:
    """The closing paragraph: this run's accuracy beside the report's and the measured runs'."""
    return report.conclusions(run.config, metrics, data.origins["test"].name,
                              data.origins["train"].name if "train" in data.origins else "",
                              data.is_synthetic, results_dir or "")


def shift_table(run: Run, test: TestEvaluation, shift: Optional[dict]) -> report.MarkdownText:
    """Accuracy under shift, each with its interval, beside the clean accuracy; or why not."""
    if shift is None:
        return report.MarkdownText("Not tested under shift: set "
                                   f"{setting('corruptions', True)} to test on corrupted copies "
                                   "of the test images.")
    from .options.corruptions import shift_table

    return report.MarkdownText(shift_table(shift, test.accuracy))


def shift_figures(run: Run, data: CifarData, test: TestEvaluation,
                  shift: Optional[dict]) -> Dict[str, plt.Figure]:
    if shift is None:
        return {}
    from .options.corruptions import shift_figure

    figure = shift_figure(shift, test.accuracy, tested(run, data))
    return _saved(run, {"accuracy_under_shift": figure})


def history(run: Run, result: TrainingResult) -> Tuple[List[dict], str]:
    """(per-epoch history, whose it is): this run's, or, for an evaluation of one weights file,
    the history its training run recorded in the metrics.json beside it."""
    if not run.config.evaluate_only:
        return result.history, "this run"
    weights = run.config.model_weights
    recorded = run_record(weights[0]) if len(weights) == 1 else None
    if recorded is None:
        return [], "no recorded training run"
    return recorded["history"], (report.recorded_by(recorded, f"the run that trained {weights[0]}")
                                 + ", not computed here")


def history_table(run: Run, result: TrainingResult) -> str:
    """The per-epoch history as a table, headed by whose it is."""
    _check_owned(run, result)
    epochs, whose = history(run, result)
    if not epochs:
        return f"no training history: {whose}"
    return f"Training history, {whose}:\n{report.format_history(epochs)}"


# --- figures --------------------------------------------------------------------------------

def _saved(run: Run, figures: Dict[str, plt.Figure]) -> Dict[str, plt.Figure]:
    if run.context.is_main:
        for name, figure in figures.items():
            plots.save_figure(figure, run.config.figures_folder, name)
    return figures


def data_figures(run: Run, data: CifarData, count: int = 32) -> Dict[str, plt.Figure]:
    """A grid of training images, spread over the classes, through the recipe's augmentation."""
    if not len(data.train):
        print("an evaluation loads no training images: no augmented samples to show")
        return {}
    chosen = np.linspace(0, len(data.train) - 1, min(count, len(data.train))).astype(int)
    images, labels = to_device_tensors(data.train.images[chosen], data.train.labels[chosen], "cpu")
    parameters = draw_parameters(len(labels), run.recipe.augmentation, epoch_generator(run.config.seed, 1))
    augmented = augment_batch(images, parameters, run.recipe.augmentation)
    title = (f"Augmented training images, {run.recipe.name} recipe: {len(labels)} of "
             f"{data.origins['train'].name} (n = {len(data.train):,})")
    return _saved(run, {"augmented_samples": plots.augmented_samples(augmented, labels, data.classes,
                                                                     title)})


def training_figures(run: Run, data: CifarData, result: TrainingResult) -> Dict[str, plt.Figure]:
    """Curves and learning rates per epoch, of this run or (evaluation) the recorded one."""
    _check_owned(run, result)
    epochs, whose = history(run, result)
    if not epochs:
        print(f"no training curves: {whose}")
        return {}
    if run.config.evaluate_only:
        images = report.recorded_training_images(run_record(run.config.model_weights[0]))
    else:
        images = report.training_images(data.origins["train"].name, len(data.train), len(data.val))
    return _saved(run, plots.history_figures(epochs, whose, images))


def tested(run: Run, data: CifarData) -> str:
    """The test images with their n, and, in an evaluation, the weights tested on them."""
    if not run.config.evaluate_only:
        return data.test_name
    weights = run.config.model_weights
    return (f"{weights[0] if len(weights) == 1 else 'an ensemble of ' + ', '.join(weights)} on "
            f"{data.test_name}")


def evaluation_figures(run: Run, data: CifarData, test: TestEvaluation) -> Dict[str, plt.Figure]:
    images = tested(run, data)
    return _saved(run, {
        "confusion_matrix": plots.confusion_matrix(test.labels, test.predicted, data.classes, images),
        "per_class_accuracy": plots.per_class_accuracy(test.labels, test.predicted, data.classes,
                                                       images),
        "reliability_diagram": plots.reliability_diagram(test.confidence, test.correct, images),
    })


def error_figures(run: Run, data: CifarData, test: TestEvaluation) -> Dict[str, plt.Figure]:
    return _saved(run, {"misclassified": plots.misclassified_gallery(
        data.test.images, test.labels, test.predicted, test.confidence, data.classes,
        tested(run, data))})
