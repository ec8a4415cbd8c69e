"""The accuracy's sampling interval, and the ensemble's and evaluation's shared pieces."""
import pytest
import torch

from helpers.evaluation import (average_probabilities, format_accuracy, from_logits,
                                wilson_interval)


@pytest.mark.parametrize("correct, total, low, high", [
    (905, 1000, 88.52, 92.17),   # computed by hand from Wilson (1927), z = 1.96
    (0, 10, 0.0, 27.75),         # the textbook case where the normal approximation gives [0, 0]
    (10, 10, 72.25, 100.0),
    (50, 100, 40.38, 59.62),
])
def test_wilson_interval_matches_worked_values(correct, total, low, high):
    assert wilson_interval(correct, total) == pytest.approx((low, high), abs=0.01)


def test_the_interval_narrows_with_more_images_and_holds_the_accuracy():
    small, large = wilson_interval(93, 100), wilson_interval(9300, 10000)
    assert small[0] < large[0] < 93 < large[1] < small[1]


def test_a_test_accuracy_is_written_with_its_interval_and_n():
    assert format_accuracy(90.5, 1000) == "90.50 % (95 % interval 88.5–92.2 %, n = 1,000)"


def test_evaluation_results_carry_the_interval_of_their_own_images():
    logits = torch.eye(10).repeat(10, 1)                     # 100 images, predicted 0..9 in turn
    labels = torch.arange(10).repeat(10)
    labels[:7] = (labels[:7] + 1) % 10                       # 7 wrong
    test = from_logits(logits, labels)
    assert test.accuracy == pytest.approx(93.0) and test.interval == wilson_interval(93, 100)


def test_an_ensemble_prediction_is_the_log_of_the_mean_probability():
    first, second = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mean = (first.softmax(1) + second.softmax(1)) / 2
    assert torch.allclose(average_probabilities([first, second]).softmax(1), mean)
