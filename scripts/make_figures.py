"""Regenerate the committed figures/ from a committed run: the only way figures/ changes.

    python scripts/make_figures.py --run results/reference-seed0 --data_dir data/cifar10-official

Training curves and the learning-rate schedule are drawn from the run's metrics.json, and say
so; the augmented samples, confusion matrix, per-class accuracy, reliability diagram and the
most confident mistakes come from evaluating the run's model.pt on the folder's test images (a
minute on a CPU for official test images 0–999), with the run's own recipe and seed. Every
title names its images and n. The numbers the evaluation figures show should be in a table:
the script names the committed evaluation (results/*/metrics.json) of the same weights on the
same images that they match, or says that none does. Notebook runs write their figures to
output_dir/figures, never here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from helpers import stages, plots  # noqa: E402
from helpers.settings import PARAMETERS, make_config  # noqa: E402
from helpers.recipes import TTA_SETTINGS  # noqa: E402
from helpers.report import load_runs, recorded_by, recorded_training_images  # noqa: E402


def training_config(metrics: dict, data_dir: str, figures_dir: str, output_dir: str):
    """The run's own training settings, reading the image folders: for its augmented samples."""
    settings = {name: value for name, value in metrics["config"].items()
                if name in PARAMETERS and name not in ("figures_dir", "output_dir")}
    settings.update(data_source="folder", data_dir=data_dir, resume=False, kaggle_test_pkl=None,
                    progress="none", teacher_weights=None, test_subset=None, device="cpu",
                    test_each_epoch=False, figures_dir=figures_dir, output_dir=output_dir)
    return make_config(**settings)


def evaluation_config(metrics: dict, run_folder: str, data_dir: str, figures_dir: str,
                      output_dir: str):
    """An evaluation of the run's model.pt as the run evaluated it (its recipe's test-time
    augmentation), on the image folders' test images."""
    overrides = {name: value for name, value in (metrics["config"].get("recipe_overrides") or {}).items()
                 if name in TTA_SETTINGS}
    # Runs from before architectures were recorded trained the reference network.
    return make_config(data_source="folder", data_dir=data_dir, recipe=metrics["recipe"],
                       recipe_overrides=overrides or None,
                       architecture=metrics.get("architecture", "resnet"),
                       model_weights=os.path.join(run_folder, "model.pt"), device="cpu",
                       progress="none", figures_dir=figures_dir, output_dir=output_dir)


def committed_evaluation(weights: str, test_name: str, tta_flip: bool) -> Optional[dict]:
    """The committed evaluation of `weights` on the test images named `test_name`, if any."""
    for run in load_runs(evaluations=True):
        if (run["evaluated_weights"] == [weights] and run["data"]["test"]["name"] == test_name
                and run["recipe_settings"]["tta_flip"] == tta_flip):
            return run
    return None


def agreement(accuracy: float, ece: float, committed: Optional[dict]) -> str:
    """Whether the figures' accuracy and ECE are the ones a committed evaluation records."""
    shown = f"accuracy {accuracy:.2f} %, ECE {ece:.2f} %"
    if committed is None:
        return (f"{shown}; no committed evaluation records these weights on these images, so "
                "these figures show numbers that no table has")
    recorded = f"accuracy {committed['test_accuracy']:.2f} %, ECE {committed['ece']:.2f} %"
    same = "the same as" if recorded == shown else "NOT the same as"
    return f"{shown}: {same} results/{committed['folder']} ({recorded})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a results/ folder with metrics.json and model.pt")
    parser.add_argument("--data_dir", required=True, help="image folders: train/<class>/, test/<class>/")
    parser.add_argument("--figures_dir", default=os.path.join(ROOT, "figures"))
    args = parser.parse_args()
    data_dir, figures_dir = os.path.abspath(args.data_dir), os.path.abspath(args.figures_dir)
    # Paths as the committed tables name them ("results/reference-seed0/model.pt"): from ROOT.
    run_folder = os.path.relpath(os.path.abspath(args.run), ROOT)
    os.chdir(ROOT)
    with open(os.path.join(run_folder, "metrics.json")) as file:
        metrics = json.load(file)
    with tempfile.TemporaryDirectory() as scratch:  # the evaluation's metrics.json: not kept
        training = stages.start(training_config(metrics, data_dir, figures_dir, scratch))
        stages.data_figures(training, stages.load(training))
        for name, figure in plots.history_figures(
                metrics["history"], recorded_by(metrics, run_folder),
                recorded_training_images(metrics)).items():
            plots.save_figure(figure, figures_dir, name)
        run = stages.start(evaluation_config(metrics, run_folder, data_dir, figures_dir, scratch))
        data = stages.load(run)
        result = stages.load_trained(run, data)
        test = stages.evaluate_test(run, data, result)
        stages.evaluation_figures(run, data, test)
        stages.error_figures(run, data, test)
    committed = committed_evaluation(run.config.model_weights[0], data.origins["test"].name,
                                     run.recipe.tta.flip)
    print(f"figures of {run_folder} on {data.test_name} written to {figures_dir}: "
          f"{agreement(test.accuracy, test.ece, committed)}")


if __name__ == "__main__":
    main()
