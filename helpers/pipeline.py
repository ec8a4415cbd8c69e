"""The pipeline's stages, in order, shared line for line by the notebook and `helpers.cli`.

    run = start(config)            checks everything that can be checked before any work
    data = load(run)               data, subsets, validation split, integrity summary
    network = build_model(run)     the chosen architecture, seeded, under the parameter budget
    result = train(run, data, network)
    test = evaluate_test(run, data, result)
    submit(run, result)            Kaggle CSV when kaggle_test_pkl is set
    metrics = finish(run, data, result, test)    metrics.json (and model.pt after training)

With `model_weights` set, `train` loads those weights (several: an ensemble) instead of training.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import model as architectures
from . import plots
from .augment import augment_batch, draw_parameters, epoch_generator, to_device_tensors
from .checkpoints import load_checkpoint, load_resumable
from .config import PARAMETERS, ConfigError, RunConfig, check_writable, resolve_device
from .data import CifarData, load_data, summarize, usable_cpus
from .distributed import DistributedContext, init_distributed, main_rank_first
from .evaluation import (NO_TTA, Ensemble, TestEvaluation, TestTimeAugmentation,
                         average_probabilities, format_accuracy, format_per_class, from_logits,
                         per_class_scores)
from .inference import (Predictor, load_kaggle_test, predict, recorded_tta, views_text,
                        write_submission)
from .launch import PAPERMILL, launcher, rerun_hint, setting
from .model import REFERENCE_PARAMETER_COUNT, NetworkShape, check_parameter_budget
from .provenance import subset_rule
from .quantization import INT8, Int8Network, check_available, quantize_result
from .recipes import EVALUATION_SETTINGS, Recipe, resolve_recipe
from .report import (REFERENCE_TEST_ACCURACY, SYNTHETIC_WARNING, MarkdownText, build_metrics,
                     network_words, summary, write_metrics)
from .results import RESULTS_DIR, hardware, load_runs, measured_lines, recorded_run
from .step import TrainingStep
from .training import (Trainer, TrainingResult, format_history, make_optimizer, make_scheduler,
                       resolve_amp)
from .weights import float_network, load_network, network_record, parameter_count, save_network


@dataclass(frozen=True)
class Run:
    """A validated config with everything resolved from it. `tta`: the test-time augmentation
    of each evaluated network (one; with model_weights, one per file). `done`: what this run
    has done so far, so that a notebook cell run again cannot do it twice."""

    config: RunConfig
    recipe: Recipe
    device: torch.device
    context: DistributedContext
    resume_state: Optional[dict] = None
    tta: Tuple[TestTimeAugmentation, ...] = (NO_TTA,)
    tta_source: str = "the recipe"
    done: Dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return os.path.join(self.config.output_dir, name)


def start(config: RunConfig) -> Run:
    """Resolve device, recipe and ranks; check outputs, weights files, the resume checkpoint and
    the Kaggle pickle now, so that a mistake costs seconds, not a training run."""
    device = resolve_device(config)
    if device.type == "cpu" and torch.get_num_threads() > usable_cpus():
        # torch starts a thread per core of the host; in a container allowed fewer CPUs, the
        # extra threads only wait for each other.
        torch.set_num_threads(usable_cpus())
    context = init_distributed(device.type == "cuda")
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if config.batch_size % context.world_size:
        raise ConfigError(f"batch_size={config.batch_size} must be divisible by the "
                          f"{context.world_size} ranks (it is the global batch)")
    check_writable("output_dir", config.output_dir)
    check_writable("figures_dir", config.figures_folder)
    shape = network_shape(config)
    check_parameter_budget(shape.build(), f"architecture={shape}")
    if config.kaggle_test_pkl is not None:
        load_kaggle_test(config.kaggle_test_pkl)
    _check_output_folder(config)
    _check_quantizable(config, load_members(config.model_weights, config.architecture)
                       if config.evaluate_only else [])
    if config.teacher_weights is not None:
        load_members(config.teacher_weights, None, "teacher_weights")
    recipe = resolve_recipe(config)
    tta, tta_source = (TestTimeAugmentation.of(recipe),), f"recipe={recipe.name!r}"
    if config.evaluate_only:
        recipe, tta, tta_source = evaluation_tta(config, recipe)
    if config.teacher_weights is not None and not recipe.distill_weight:
        raise ConfigError("teacher_weights is set, but the recipe's distill_weight is 0, so the "
                          "teacher would change nothing: give its loss a weight in (0, 1], e.g. "
                          f"{setting('recipe_overrides', {'distill_weight': 0.5})}")
    if config.teacher_weights is None and recipe.distill_weight:
        raise ConfigError(f"recipe_overrides['distill_weight']={recipe.distill_weight} needs "
                          "teacher_weights: the model.pt file(s) to learn from")
    resume_state = None
    if config.resume:
        checkpoint = os.path.join(config.output_dir, "checkpoint.pt")
        resume_state = load_resumable(checkpoint, config)
        if resume_state["epoch"] > config.epochs:
            done = resume_state["epoch"]
            raise ConfigError(f"resume=True, epochs={config.epochs}: {checkpoint!r} already holds "
                              f"{done} epochs, so that run is complete. Set more epochs to train "
                              f"it longer (e.g. {setting('epochs', done + 1)}), or evaluate its "
                              "model.pt with "
                              f"{setting('model_weights', os.path.join(config.output_dir, 'model.pt'))}"
                              f" and {setting('resume', False)}")
    return Run(config, recipe, device, context, resume_state, tta, tta_source)


def evaluation_tta(config: RunConfig, recipe: Recipe
                   ) -> Tuple[Recipe, Tuple[TestTimeAugmentation, ...], str]:
    """(recipe, test-time augmentation per weights file, where it comes from) of an evaluation:
    what each file's run recorded, unless the parameters choose (recipe set, or recipe_overrides
    of tta_flip / tta_translate). The recipe's tta settings become those used, where all
    members share them, so that metrics.json records what was measured."""
    chosen = [name for name in EVALUATION_SETTINGS if name in (config.recipe_overrides or {})]
    if config.recipe != PARAMETERS["recipe"].default or chosen:
        source = ", ".join([f"recipe={config.recipe!r}"] * (not chosen) +
                           [f"recipe_overrides {chosen}"] * bool(chosen))
        return recipe, (TestTimeAugmentation.of(recipe),) * len(config.model_weights), source
    recorded = [recorded_tta(path) for path in config.model_weights]
    tta = tuple(views or TestTimeAugmentation.of(recipe) for views in recorded)
    source = ("as recorded with the weights" if all(recorded) else
              f"not recorded with {sum(v is None for v in recorded)} of the weights: none there")
    if len(set(tta)) == 1:
        recipe = dataclasses.replace(recipe, tta_flip=tta[0].flip, tta_translate=tta[0].translate)
    return recipe, tta, source


def _check_output_folder(config: RunConfig) -> None:
    """Never write over a finished run's files (a training run's checkpoint, model.pt and
    metrics.json; an evaluation's metrics.json and figures), except to continue a training
    run (resume=True, whose checkpoint load_resumable checks)."""
    folder = config.output_dir
    training_run = os.path.exists(os.path.join(folder, "checkpoint.pt"))
    if config.resume or not (training_run or os.path.exists(os.path.join(folder, "metrics.json"))):
        return
    # A sibling, not a folder inside the finished run's.
    elsewhere = setting("output_dir", folder.rstrip("/\\") + ("-evaluation" if config.evaluate_only
                                                              else "-2"))
    # papermill writes its output notebook before the first cell runs: one inside this folder
    # already holds this refusal, and nothing here can keep it.
    report = (" (papermill has already replaced its output notebook, if you named the earlier "
              "run's: give each run its own)" if launcher() == PAPERMILL else "")
    if training_run and config.evaluate_only:
        raise ConfigError(f"output_dir={folder!r} holds a training run (checkpoint.pt); "
                          "evaluating model_weights there would overwrite its metrics.json "
                          f"and figures: set another folder, e.g. {elsewhere}{report}")
    if training_run:
        raise ConfigError(f"output_dir={folder!r} already holds a training run (checkpoint.pt); "
                          "a new run would overwrite its checkpoint, model.pt and metrics.json. "
                          f"Continue it with {setting('resume', True)} (raise epochs to train "
                          f"longer), or set another folder, e.g. {elsewhere}, or delete that "
                          f"folder to start over{report}")
    raise ConfigError(f"output_dir={folder!r} holds a finished run (metrics.json, figures); "
                      f"a new run would replace them: set another folder, e.g. {elsewhere}, "
                      f"or delete that folder to run there again{report}")


def _check_quantizable(config: RunConfig, members: List[torch.nn.Module]) -> None:
    if config.quantize != INT8:
        return
    check_available()  # this PyTorch, on this CPU
    if len(members) > 1:
        raise ConfigError("quantize='int8' quantizes one network, and model_weights lists "
                          f"{len(members)}: quantize each model.pt in a run of its own, then "
                          "list their model-int8.pt files in model_weights as an ensemble")
    if members and isinstance(members[0], Int8Network):
        raise ConfigError(f"model_weights={config.model_weights[0]!r} is already int8: set "
                          "quantize='off' to evaluate it as it is")


def network_shape(config: RunConfig) -> NetworkShape:
    """The network a training run builds: architecture, width multiplier, blocks per stage."""
    return NetworkShape(config.architecture, config.width_multiplier, config.blocks)


def load_members(paths: Tuple[str, ...], architecture: Optional[str],
                 name: str = "model_weights") -> List[torch.nn.Module]:
    """A network per weights file, in eval mode: of `architecture`, or (None) of the one each
    file records (files from before architectures were recorded hold the reference network),
    at the size each file records; an int8 file gives an int8 network."""
    return [load_network(path, architecture, name) for path in paths]


def _source_words(config: RunConfig) -> str:
    return {"torchvision": f"CIFAR-10 as torchvision downloads it into `{config.data_dir}`",
            "folder": f"the image folders in `{config.data_dir}`",
            "synthetic": "SYNTHETIC images (not CIFAR-10)"}[config.data_source]


def _images_words(size: Optional[int], split: str) -> str:
    return f"{size:,} {split} images ({subset_rule(size)})" if size else f"all {split} images"


def heading(run: Run) -> MarkdownText:
    """What this run does, in a sentence of Markdown, and the parameters set away from their
    defaults: the opening of every executed notebook (and of the command line's output), so
    that saved outputs always say which run made them."""
    config = run.config
    tested = _images_words(config.test_subset, "test")
    if config.evaluate_only:
        weights = " and ".join(f"`{path}`" for path in config.model_weights)
        does = f"evaluates {weights}, trained elsewhere, on {tested} of {_source_words(config)}"
    else:
        held_out = f"{config.val_size:,} of them held out for validation" if config.val_size else \
            "none held out for validation"
        epochs = f"{config.epochs} epoch{'s' * (config.epochs != 1)}"
        if run.resume_state is not None:
            epochs = f"epochs {run.resume_state['epoch'] + 1} to {config.epochs} (resumed)"
        does = (f"trains the `{config.architecture}` network with the {run.recipe.name} recipe "
                f"for {epochs} (seed {config.seed}) on "
                f"{_images_words(config.train_subset, 'training')} of {_source_words(config)}, "
                f"{held_out}, and tests it on {tested}")
    shown = config.to_dict()
    changed = [f"`{name}={shown[name]!r}`" for name, declared in PARAMETERS.items()
               if getattr(config, name) != declared.default]
    return MarkdownText(f"**This run** {does}; its files go to `{config.output_dir}`.\n\n"
                        f"Parameters set away from their defaults: {', '.join(changed) or 'none'}.")


def describe(run: Run) -> str:
    """The run's recipe, every setting resolved; or, for an evaluation, the run that trained
    each weights file (from the metrics.json beside it) and the test-time augmentation used."""
    lines = [f"device: {run.device}" + (f" (rank {run.context.rank} of {run.context.world_size})"
                                        if run.context.enabled else "")]
    if run.config.evaluate_only:
        for path, tta in zip(run.config.model_weights, run.tta):
            lines += [f"evaluating {path}, not trained here: {trained_by(path)}",
                      f"  test-time augmentation: {tta} ({run.tta_source})"]
    else:
        lines += [f"{name:<20} {value!r}" for name, value in run.recipe.to_dict().items()]
    if run.config.quantize == INT8:
        lines.append(f"quantize='int8': the tested network is int8, calibrated on "
                     f"{run.config.calibration_images:,} training images, and computes on the "
                     "CPU (quantized kernels exist only there), whatever `device` says")
    if run.config.data_source == "synthetic":
        lines.insert(0, f"*** {SYNTHETIC_WARNING} ***")
    return "\n".join(lines)


def trained_by(weights: str) -> str:
    """How a weights file was trained, as its run recorded it; or that nothing was recorded."""
    metrics = recorded_run(weights)
    if metrics is None:
        return "no metrics.json beside it, so how it was trained is not known here"
    data = metrics.get("data", {})
    trained_on = data.get("train", {}).get("name", metrics["data_source"])
    tested = data.get("test", {}).get("name", "its test images")
    epochs = metrics["epochs_completed"]
    overrides = metrics.get("config", {}).get("recipe_overrides")
    return (f"the {metrics['recipe']} recipe{f' with recipe_overrides={overrides}' if overrides else ''}, "
            f"{epochs} epoch{'s' * (epochs != 1)}, batch "
            f"{metrics['batch_size']}, seed {metrics['seed']}, on {trained_on}; "
            f"{hardware(metrics)}, commit {str(metrics['commit'])[:7]}; it "
            f"recorded {format_accuracy(metrics['test_accuracy'], metrics['test_images'])} on {tested}")


def load(run: Run) -> CifarData:
    """The run's data (load_data); under torchrun, rank 0 downloads or decodes and caches the
    images while the other ranks wait, then they read what it left."""
    started = time.perf_counter()
    with main_rank_first(run.context):
        data = load_data(run.config)
    if run.context.is_main:
        print(summarize(data))
        print(f"loaded in {time.perf_counter() - started:.1f} s")
    return data


def build_model(run: Run) -> torch.nn.Module:
    """The run's architecture, initialised from the run's seed; its size is checked."""
    torch.manual_seed(run.config.seed)
    shape = network_shape(run.config)
    network = shape.build()
    params = check_parameter_budget(network, f"architecture={shape}")
    if shape == NetworkShape():
        assert params == REFERENCE_PARAMETER_COUNT, f"{params:,} parameters, expected 4,697,162"
    return network


def model_source(architecture: str) -> str:
    """The source of the classes that define `architecture`, as they are in helpers/model.py."""
    classes = {"resnet": [architectures.BasicBlock],
               "se_resnet": [architectures.SqueezeExcitation, architectures.BasicBlock],
               "resnext": [architectures.ResNeXtBlock]}[architecture]
    return "\n\n".join(inspect.getsource(c) for c in [*classes, architectures.ResNet])


def model_table(network: torch.nn.Module) -> str:
    return architectures.format_layer_table(architectures.layer_table(network))


def training_step_source() -> str:
    """The eager training step, the optimizer and the schedule, as they are in their modules."""
    return "\n\n".join(inspect.getsource(code) for code in (TrainingStep, make_optimizer, make_scheduler))


# Networks that have been trained (or loaded into) by train(): a notebook cell run again must
# not train one on top of what it learned before, under a fresh "epoch 1" label.
_TRAINED: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def train(run: Run, data: CifarData, network: torch.nn.Module) -> TrainingResult:
    """Train with the run's recipe, or, with `model_weights` set, load those weights instead.
    Run again for the same run (a notebook cell run twice), it stops and says what to do:
    training again would write over the files of what it trained the first time."""
    config = run.config
    if config.evaluate_only:  # loading weights again repeats the same work: no guard needed
        members = load_members(config.model_weights, config.architecture)
        print(f"loaded {', '.join(config.model_weights)}: no training in this run")
        evaluated = members[0] if len(members) == 1 else Ensemble(members)
        return _owned(run, quantize_result(config, data, TrainingResult(evaluated.to(run.device),
                                                                         members=members)))
    if "trained" in run.done:
        raise ConfigError(
            f"this run has already trained into output_dir={config.output_dir!r} ("
            f"{_checkpoint_epoch(run)}): training again would overwrite it. To continue it, "
            f"set {setting('resume', True)} and {rerun_hint()}; to train anew, set another "
            f"folder, e.g. {setting('output_dir', config.output_dir + '-2')}, and {rerun_hint()}")
    if network in _TRAINED and run.resume_state is None:
        raise ConfigError("this network has been trained already, by an earlier run of the "
                          "training step: build a fresh one first (the notebook's Model cell, "
                          "network = stages.build_model(run)), so that training starts from the "
                          "seed's initial weights")
    _check_output_folder(config)  # again: another run may have written there since start()
    run.done["trained"] = True
    _TRAINED.add(network)
    teacher = None
    if config.teacher_weights is not None:
        teachers = load_members(config.teacher_weights, None, "teacher_weights")
        teacher = teachers[0] if len(teachers) == 1 else Ensemble(teachers)
    trainer = Trainer(config, run.recipe, data, network, run.device, run.context, teacher)
    if run.resume_state is not None:
        trainer.resume_from_checkpoint(run.resume_state)
    return _owned(run, quantize_result(config, data, trainer.fit()))


def _owned(run: Run, result: TrainingResult) -> TrainingResult:
    """Mark `result` as this run's: the stages after training refuse another run's result."""
    run.done["result"] = result
    return result


def _check_owned(run: Run, result: TrainingResult) -> None:
    """A notebook kernel keeps `result` from an earlier run when a new run's training cell was
    interrupted or skipped; evaluating or saving it would file that run under this one."""
    if run.done.get("result") is not result:
        raise ConfigError(
            "this `result` is not this run's (it comes from an earlier run, or this run's "
            "training step did not finish): run this run's training step first, result = "
            f"stages.train(run, data, network), so that nothing of another run is written into "
            f"output_dir={run.config.output_dir!r}")


def _checkpoint_epoch(run: Run) -> str:
    path = run.path("checkpoint.pt")
    if not os.path.exists(path):
        return "no epoch finished"
    return f"{path} holds epoch {load_checkpoint(path)['epoch']}"


def predictor(run: Run, result: TrainingResult) -> Predictor:
    """The trained network, or the loaded weights, each with the run's test-time augmentation:
    what the test accuracy measures and what labels submission.csv."""
    networks = [member.to(run.device) for member in result.members] or [result.network.to(run.device)]
    return Predictor(list(zip(networks, run.tta)), run.config.eval_batch_size,
                     resolve_amp(run.config.amp, run.device))


def evaluate_test(run: Run, data: CifarData, result: TrainingResult) -> TestEvaluation:
    """Evaluate the final model once on the test images (never used for any choice); an
    ensemble's members are evaluated alone as well."""
    _check_owned(run, result)
    images, labels = to_device_tensors(data.test.images, data.test.labels, run.device)
    # Each member's (test-time augmented) logits once; an ensemble averages their softmax.
    model = predictor(run, result)
    member_logits = model.member_logits(images)
    if len(member_logits) == 1:
        return from_logits(member_logits[0], labels)
    return from_logits(average_probabilities(member_logits), labels,
                       [from_logits(logits, labels).accuracy for logits in member_logits])


def quality_report(run: Run, data: CifarData, test: TestEvaluation) -> str:
    """Accuracy, calibration error, per-class precision/recall/F1, and ensemble members."""
    lines = [f"test accuracy {format_accuracy(test.accuracy, len(test.labels))} on "
             f"{data.origins['test'].name}",
             f"(the report: {REFERENCE_TEST_ACCURACY:.2f} % on all 10,000 official test images)",
             f"expected calibration error {test.ece:.2f} % (15 bins)", "",
             format_per_class(per_class_scores(test.labels, test.predicted, data.classes))]
    if test.member_accuracies:
        lines += ["", "ensemble members alone:"]
        lines += [f"  {path}: {accuracy:.2f} %"
                  for path, accuracy in zip(run.config.model_weights, test.member_accuracies)]
    return "\n".join(lines)


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
        run.done["submission"] = {"path": run.path("submission.csv"), "images": len(ids),
                                  "test_time_augmentation": model.test_time_augmentation}
    return (f"wrote {run.path('submission.csv')}: labels of {run.done['submission']['images']:,} "
            f"images, with the test-time augmentation of the test accuracy "
            f"({model.test_time_augmentation})") if "submission" in run.done else ""


def conclusions(run: Run, data: CifarData, metrics: dict,
                results_dir: Optional[str] = None) -> MarkdownText:
    """The closing paragraph, computed: this run's accuracy with its interval beside the
    report's, what was trained or evaluated on which data, and what the measured runs in
    results/ say the improved recipe and the options change."""
    config, origin = run.config, data.origins["test"]
    lines = [f"**Test accuracy {format_accuracy(metrics['test_accuracy'], metrics['test_images'])}** "
             f"on {origin.name}; the report: {REFERENCE_TEST_ACCURACY:.2f} % on all 10,000 official "
             "test images."]
    if config.evaluate_only:
        lines.append(f"The weights were trained elsewhere ({'; '.join(map(trained_by, config.model_weights))}) "
                     f"and evaluated here on {metrics['device']}.")
    else:
        epochs = metrics["epochs_completed"]
        lines.append(f"Trained here: the {metrics['recipe']} recipe, {epochs} "
                     f"epoch{'s' * (epochs != 1)} on {data.origins['train'].name}, "
                     f"{metrics['wall_time_s']:.0f} s on "
                     f"{metrics['device']} ({metrics['training_step']} step).")
    if "0–999" in origin.name:
        lines.append("Images 0–999 are a sample of the official test set: the interval above is "
                     "their sampling spread, and how an accuracy on them compares with one on all "
                     "10,000 is not yet measured.")
    elif "JPEG mirror" in origin.name:
        lines.append("The JPEG mirror's test images are lossy copies: accuracies on them run below "
                     "the official images'.")
    elif data.is_synthetic:
        lines.append(f"**{SYNTHETIC_WARNING}.**")
    lines.append(f"The network is {network_words(metrics)} (the report's: "
                 f"{REFERENCE_PARAMETER_COUNT:,} parameters).")
    measured = measured_lines(load_runs(results_dir or RESULTS_DIR),
                              load_runs(results_dir or RESULTS_DIR, evaluations=True))
    return MarkdownText("\n\n".join([
        " ".join(lines),
        "What the recipes and options measured (results/, with their hardware and commits in "
        "results/README.md):", "\n".join(measured)]))


def finish(run: Run, data: CifarData, result: TrainingResult, test: TestEvaluation) -> dict:
    """Write metrics.json and, after training, model.pt (the evaluated weights in half
    precision); rank 0 only. Returns the metrics."""
    _check_owned(run, result)
    network = result.members[0] if result.members else result.network
    metrics = build_metrics(config=run.config, recipe=run.recipe, data=data, device=run.device,
                            params=parameter_count(network), result=result, test=test)
    metrics.update(network_record(network))
    metrics["test_time_augmentation"] = views_text(run.tta)
    for member, tta in zip(metrics.get("ensemble_members", []), run.tta):
        member["test_time_augmentation"] = str(tta)
    if "submission" in run.done:
        metrics["submission"] = {**run.done["submission"], "path": "submission.csv"}
    if run.context.is_main:
        if run.config.quantize == INT8:  # the tested int8 network, a weights file like model.pt
            metrics["quantization"]["file_bytes"] = save_network(
                run.path("model-int8.pt"), network, test_time_augmentation=run.tta[0].to_dict())
        write_metrics(run.path("metrics.json"), metrics)
        if not run.config.evaluate_only:  # an evaluation has nothing new to save
            save_network(run.path("model.pt"), float_network(result.network),
                         run.config.architecture, run.tta[0].to_dict())
        print(summary(metrics))
    return metrics


# --- figures --------------------------------------------------------------------------------

def _saved(run: Run, figures: Dict[str, plt.Figure]) -> Dict[str, plt.Figure]:
    if run.context.is_main:
        for name, figure in figures.items():
            plots.save_figure(figure, run.config.figures_folder, name)
    return figures


def training_images(name: str, trained: int, held_out: int) -> str:
    """"CIFAR-10 official training images (n = 45,000 trained on, 5,000 held out for
    validation)"."""
    held = f"{held_out:,} held out for validation" if held_out else "none held out for validation"
    return f"{name} (n = {trained:,} trained on, {held})"


def recorded_training_images(metrics: dict) -> str:
    """The training images a recorded run names in its metrics.json (older runs: its source)."""
    name = metrics.get("data", {}).get("train", {}).get("name", metrics["data_source"])
    return training_images(name, metrics["train_images"], metrics["val_images"])


def recorded_by(metrics: dict, run_name: str) -> str:
    """"recorded by results/reference-seed0 (NVIDIA H200, commit 043b441)"."""
    return f"recorded by {run_name} ({hardware(metrics)}, commit {str(metrics['commit'])[:7]})"


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


def history(run: Run, result: TrainingResult) -> Tuple[List[dict], str]:
    """(per-epoch history, whose it is): this run's, or, for an evaluation of one weights file,
    the history its training run recorded in the metrics.json beside it."""
    if not run.config.evaluate_only:
        return result.history, "this run"
    recorded = recorded_run(run.config.model_weights[0]) if len(run.config.model_weights) == 1 else None
    if recorded is None:
        return [], "no recorded training run"
    return recorded["history"], (recorded_by(recorded, f"the run that trained "
                                                       f"{run.config.model_weights[0]}")
                                 + ", not computed here")


def history_table(run: Run, result: TrainingResult) -> str:
    """The per-epoch history as a table, headed by whose it is."""
    _check_owned(run, result)
    epochs, whose = history(run, result)
    if not epochs:
        return f"no training history: {whose}"
    return f"Training history, {whose}:\n{format_history(epochs)}"


def history_figures(epochs: List[dict], whose: str, images: str) -> Dict[str, plt.Figure]:
    """Training curves and learning rates per epoch, each titled with whose training it was
    and on which images."""
    return {"training_curves": plots.training_curves(epochs, f"Training, {whose}:\n{images}"),
            "lr_schedule": plots.lr_schedule(epochs, f"Learning-rate schedule, {whose}:\n{images}")}


def training_figures(run: Run, data: CifarData, result: TrainingResult) -> Dict[str, plt.Figure]:
    """Curves and learning rates per epoch, of this run or (evaluation) the recorded one."""
    _check_owned(run, result)
    epochs, whose = history(run, result)
    if not epochs:
        print(f"no training curves: {whose}")
        return {}
    if run.config.evaluate_only:
        images = recorded_training_images(recorded_run(run.config.model_weights[0]))
    else:
        images = training_images(data.origins["train"].name, len(data.train), len(data.val))
    return _saved(run, history_figures(epochs, whose, images))


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
