"""Figures: short runs stay visible, the reliability diagram draws what it is given, every
title names its images and their number, a recorded history says whose it is, nothing overlaps."""
import json

import numpy as np
import torch

from helpers import stages
from helpers import plots
from helpers.files import save_weights
from helpers.settings import make_config
from helpers.data import CIFAR10_CLASSES
from helpers.evaluation import from_logits
from helpers.model import ResNet
from helpers.training import TrainingResult


def owned(run, result):
    """`result` as the run's own, as its training step would have made it."""
    run.result = result
    return result


def history(epochs):
    return [{"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_accuracy": 10.0 * e,
             "val_loss": 2.1 / e, "val_accuracy": 9.0 * e, "test_accuracy": None}
            for e in range(1, epochs + 1)]


def test_curves_of_a_one_or_two_epoch_run_have_markers():
    for figure in (plots.training_curves(history(1)), plots.lr_schedule(history(2))):
        lines = [line for axis in figure.axes for line in axis.get_lines()]
        assert lines and all(line.get_marker() == "o" for line in lines)


def test_curves_of_a_long_run_are_plain_lines_and_show_recorded_test_accuracy():
    long = history(75)
    for entry in long:
        entry["test_accuracy"] = 50.0
    figure = plots.training_curves(long)
    labels = [line.get_label() for line in figure.axes[1].get_lines()]
    assert "test (recorded only)" in labels
    assert all(line.get_marker() in ("None", None, "") for line in figure.axes[0].get_lines())


def test_reliability_diagram_has_the_diagonal_and_a_bar_per_filled_bin():
    confidence = np.array([0.15, 0.55, 0.55, 0.95])
    figure = plots.reliability_diagram(confidence, np.array([False, True, False, True]), "four images")
    assert len(figure.axes[0].patches) == 3 and "ECE" in title(figure)


def title(figure):
    """A figure's heading as one line (the heading is wrapped to the figure's width).
    Figure.get_suptitle() is matplotlib 3.8's; the oldest supported, 3.7, has only this."""
    return " ".join(figure._suptitle.get_text().split()) if figure._suptitle else ""


def test_every_figure_of_a_training_run_names_its_images_and_their_number(tmp_path):
    run = stages.start(make_config(data_source="synthetic", train_subset=100, val_size=20,
                                   test_subset=50, output_dir=str(tmp_path / "out")))
    data = stages.load(run)
    test = from_logits(torch.randn(50, 10), torch.from_numpy(data.test.labels))
    figures = {**stages.data_figures(run, data),
               **stages.training_figures(run, data, owned(run, TrainingResult(None, history(2)))),
               **stages.evaluation_figures(run, data, test), **stages.error_figures(run, data, test)}
    assert len(figures) == 7
    trained = "SYNTHETIC images (not CIFAR-10), the first 10 of each class"
    assert f"{trained} (n = 80)" in title(figures.pop("augmented_samples"))
    for name in ("training_curves", "lr_schedule"):
        assert f"this run: {trained} (n = 80 trained on, 20 held out for validation)" in \
            title(figures.pop(name))
    for name, figure in figures.items():
        assert "SYNTHETIC images (not CIFAR-10), the first 5 of each class (n = 50)" in title(figure), name


def test_an_evaluation_titles_the_curves_and_schedule_as_the_weights_own_run_recorded_them(tmp_path):
    save_weights(str(tmp_path / "model.pt"), ResNet())
    recorded = {"history": history(3), "device": "cuda: NVIDIA H200", "commit": "abcdef0123",
                "data_source": "folder", "train_images": 45000, "val_images": 5000,
                "data": {"train": {"name": "CIFAR-10 official training images"}}}
    with open(tmp_path / "metrics.json", "w") as file:
        json.dump(recorded, file)
    run = stages.start(make_config(data_source="synthetic", model_weights=str(tmp_path / "model.pt"),
                                   output_dir=str(tmp_path / "evaluation")))
    figures = stages.training_figures(run, stages.load(run), owned(run, TrainingResult(None)))
    for name in ("training_curves", "lr_schedule"):
        assert (f"recorded by the run that trained {tmp_path / 'model.pt'} (NVIDIA H200, commit "
                "abcdef0), not computed here: CIFAR-10 official training images (n = 45,000 "
                "trained on, 5,000 held out for validation)") in title(figures[name]), name


def test_the_captions_of_the_mistakes_gallery_overlap_no_image_and_no_heading():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 10, 200)
    predicted = (true + rng.integers(0, 2, 200)) % 10
    figure = plots.misclassified_gallery(rng.integers(0, 256, (200, 32, 32, 3)), true, predicted,
                                         rng.random(200), CIFAR10_CLASSES, "two hundred images")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    tiles = [axis for axis in figure.axes if axis.get_images()]
    captions = [axis.title.get_window_extent(renderer) for axis in tiles]
    images = [axis.get_images()[0].get_window_extent(renderer) for axis in tiles]
    heading = figure._suptitle.get_window_extent(renderer)
    assert len(tiles) == 24
    assert not any(caption.overlaps(image) for caption in captions for image in images)
    assert not any(caption.overlaps(heading) for caption in captions)
