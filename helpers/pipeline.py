"""The pipeline's stages, in order, shared line for line by the notebook and `helpers.cli`.

    run = start(config)            checks everything that can be checked before any work
    data = load(run)               data, subset, validation split, integrity summary
    network = build_model(run)     the 4,697,162-parameter ResNet, seeded
    result = train(run, data, network)
    test = evaluate_test(run, data, result)
    submit(run, result)            Kaggle CSV when kaggle_test_pkl is set
    metrics = finish(run, data, result, test)    metrics.json and model.pt

With `model_weights` set, `train` loads those weights instead of training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import plots
from .augment import augment_batch, draw_parameters, epoch_generator, to_device_tensors
from .checkpoints import load_resumable, load_weights, save_weights
from .config import ConfigError, RunConfig, check_writable, resolve_device
from .data import CifarData, load_data, summarize
from .distributed import DistributedContext, init_distributed
from .inference import load_kaggle_test, predict, write_submission
from .model import REFERENCE_PARAMETER_COUNT, build_resnet, count_parameters
from .recipes import Recipe, resolve_recipe
from .report import SYNTHETIC_WARNING, build_metrics, summary, write_metrics
from .training import Trainer, TrainingResult, predict_logits, resolve_amp


@dataclass(frozen=True)
class Run:
    """A validated config with everything resolved from it."""

    config: RunConfig
    recipe: Recipe
    device: torch.device
    context: DistributedContext
    resume_state: Optional[dict] = None

    def path(self, name: str) -> str:
        return os.path.join(self.config.output_dir, name)


def start(config: RunConfig) -> Run:
    """Resolve device, recipe and ranks; check outputs, the resume checkpoint and the Kaggle
    pickle now, so that a mistake costs seconds, not a training run."""
    device = resolve_device(config)
    context = init_distributed(device.type == "cuda")
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if config.batch_size % context.world_size:
        raise ConfigError(f"batch_size={config.batch_size} must be divisible by the "
                          f"{context.world_size} ranks (it is the global batch)")
    check_writable("output_dir", config.output_dir)
    check_writable("figures_dir", config.figures_dir)
    if config.kaggle_test_pkl is not None:
        load_kaggle_test(config.kaggle_test_pkl)
    if config.model_weights is not None:
        if config.resume:
            raise ConfigError("model_weights and resume=True exclude each other: model_weights "
                              "evaluates given weights without training, resume continues training")
        load_weights(config.model_weights, build_resnet())
    resume_state = None
    if config.resume:
        resume_state = load_resumable(os.path.join(config.output_dir, "checkpoint.pt"), config)
    return Run(config, resolve_recipe(config), device, context, resume_state)


def describe(run: Run) -> str:
    """The run's settings and the recipe's resolved settings, as a readable block."""
    lines = [f"device: {run.device}" + (f" (rank {run.context.rank} of {run.context.world_size})"
                                        if run.context.enabled else "")]
    lines += [f"{name:<20} {value!r}" for name, value in run.recipe.to_dict().items()]
    if run.config.data_source == "synthetic":
        lines.insert(0, f"*** {SYNTHETIC_WARNING} ***")
    return "\n".join(lines)


def load(run: Run) -> CifarData:
    data = load_data(run.config)
    if run.context.is_main:
        print(summarize(data))
    return data


def build_model(run: Run) -> torch.nn.Module:
    """The reference network, initialised from the run's seed; its size is checked."""
    torch.manual_seed(run.config.seed)
    network = build_resnet()
    params = count_parameters(network)
    assert params == REFERENCE_PARAMETER_COUNT, f"{params:,} parameters, expected 4,697,162"
    return network


def train(run: Run, data: CifarData, network: torch.nn.Module) -> TrainingResult:
    """Train with the run's recipe, or, with `model_weights` set, load those weights instead."""
    if run.config.model_weights is not None:
        load_weights(run.config.model_weights, network)
        print(f"loaded {run.config.model_weights}: no training in this run")
        return TrainingResult(network.to(run.device))
    trainer = Trainer(run.config, run.recipe, data, network, run.device, run.context)
    if run.resume_state is not None:
        trainer.resume_from_checkpoint(run.resume_state)
    return trainer.fit()


@dataclass(frozen=True)
class TestEvaluation:
    """The final model on the test set, with what error analysis needs."""

    accuracy: float
    loss: float
    labels: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray


def evaluate_test(run: Run, data: CifarData, result: TrainingResult) -> TestEvaluation:
    """Evaluate the final model once on the test images (never used for any choice)."""
    images, labels = to_device_tensors(data.test.images, data.test.labels, run.device)
    logits = predict_logits(result.network, images, run.config.eval_batch_size,
                            run.recipe.tta_flip, resolve_amp(run.config.amp, run.device))
    probabilities = torch.softmax(logits, 1)
    confidence, predicted = probabilities.max(1)
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    predicted = predicted.cpu().numpy()
    return TestEvaluation(100 * float(np.mean(predicted == data.test.labels)), loss,
                          data.test.labels, predicted, confidence.cpu().numpy())


def submit(run: Run, result: TrainingResult) -> Optional[str]:
    """Predict the Kaggle pickle's images into output_dir/submission.csv (when asked)."""
    if run.config.kaggle_test_pkl is None or not run.context.is_main:
        return None
    images, ids = load_kaggle_test(run.config.kaggle_test_pkl)
    path = run.path("submission.csv")
    write_submission(path, ids, predict(result.network, images, run.config.eval_batch_size))
    return path


def finish(run: Run, data: CifarData, result: TrainingResult, test: TestEvaluation) -> dict:
    """Write metrics.json and model.pt, the evaluated weights in half precision (rank 0),
    and return the metrics."""
    metrics = build_metrics(config=run.config, recipe=run.recipe, data=data, device=run.device,
                            params=count_parameters(result.network), result=result,
                            test={"accuracy": test.accuracy, "loss": test.loss})
    if run.context.is_main:
        write_metrics(run.path("metrics.json"), metrics)
        save_weights(run.path("model.pt"), result.network)
        print(summary(metrics))
    return metrics


# --- figures --------------------------------------------------------------------------------

def _saved(run: Run, figures: Dict[str, plt.Figure]) -> Dict[str, plt.Figure]:
    if run.context.is_main:
        for name, figure in figures.items():
            plots.save_figure(figure, run.config.figures_dir, name)
    return figures


def data_figures(run: Run, data: CifarData, count: int = 32) -> Dict[str, plt.Figure]:
    """A grid of training images, spread over the classes, through the recipe's augmentation."""
    chosen = np.linspace(0, len(data.train) - 1, min(count, len(data.train))).astype(int)
    images, labels = to_device_tensors(data.train.images[chosen], data.train.labels[chosen], "cpu")
    parameters = draw_parameters(len(labels), run.recipe.augmentation, epoch_generator(run.config.seed, 1))
    augmented = augment_batch(images, parameters, run.recipe.augmentation)
    return _saved(run, {"augmented_samples": plots.augmented_samples(augmented, labels, data.classes)})


def training_figures(run: Run, result: TrainingResult) -> Dict[str, plt.Figure]:
    if not result.history:
        print("no training curves: the weights were loaded, not trained")
        return {}
    return _saved(run, {"training_curves": plots.training_curves(result.history),
                        "lr_schedule": plots.lr_schedule(result.history)})


def evaluation_figures(run: Run, data: CifarData, test: TestEvaluation) -> Dict[str, plt.Figure]:
    return _saved(run, {
        "confusion_matrix": plots.confusion_matrix(test.labels, test.predicted, data.classes),
        "per_class_accuracy": plots.per_class_accuracy(test.labels, test.predicted, data.classes),
    })


def error_figures(run: Run, data: CifarData, test: TestEvaluation) -> Dict[str, plt.Figure]:
    return _saved(run, {"misclassified": plots.misclassified_gallery(
        data.test.images, test.labels, test.predicted, test.confidence, data.classes)})
