"""Figures: short runs stay visible, and the reliability diagram draws what it is given."""
import numpy as np

from helpers import plots


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
    figure = plots.reliability_diagram(confidence, np.array([False, True, False, True]))
    axis = figure.axes[0]
    assert len(axis.patches) == 3 and "ECE" in axis.get_title()
