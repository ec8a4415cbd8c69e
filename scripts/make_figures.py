"""Regenerate the committed figures/ from a committed run: the only way figures/ changes.

    python scripts/make_figures.py --run results/reference-seed0 --data_dir /tmp/cifar10-jpeg

Training curves and the learning-rate schedule are drawn from the run's metrics.json; the
augmented samples, confusion matrix, per-class accuracy, reliability diagram and the most
confident mistakes come from evaluating the run's model.pt on the test images (a few minutes
on a CPU), with the run's own recipe and seed. Notebook runs write their figures to
output_dir/figures, never here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from helpers import pipeline as stages, plots  # noqa: E402
from helpers.config import PARAMETERS, make_config  # noqa: E402
from helpers.recipes import EVALUATION_SETTINGS  # noqa: E402


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
                 if name in EVALUATION_SETTINGS}
    return make_config(data_source="folder", data_dir=data_dir, recipe=metrics["recipe"],
                       recipe_overrides=overrides or None, architecture=metrics["architecture"],
                       model_weights=os.path.join(run_folder, "model.pt"), device="cpu",
                       progress="none", figures_dir=figures_dir, output_dir=output_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a results/ folder with metrics.json and model.pt")
    parser.add_argument("--data_dir", required=True, help="the image folders the run used")
    parser.add_argument("--figures_dir", default=os.path.join(ROOT, "figures"))
    args = parser.parse_args()
    with open(os.path.join(args.run, "metrics.json")) as file:
        metrics = json.load(file)
    with tempfile.TemporaryDirectory() as scratch:  # the evaluation's metrics.json: not kept
        training = stages.start(training_config(metrics, args.data_dir, args.figures_dir, scratch))
        stages.data_figures(training, stages.load(training))
        for name, figure in {"training_curves": plots.training_curves(metrics["history"]),
                             "lr_schedule": plots.lr_schedule(metrics["history"])}.items():
            plots.save_figure(figure, args.figures_dir, name)
        run = stages.start(evaluation_config(metrics, args.run, args.data_dir, args.figures_dir,
                                             scratch))
        data = stages.load(run)
        result = stages.train(run, data, stages.build_model(run))
        test = stages.evaluate_test(run, data, result)
        stages.evaluation_figures(run, data, test)
        stages.error_figures(run, data, test)
    print(f"figures of {args.run} written to {args.figures_dir} "
          f"(test accuracy here {test.accuracy:.2f} %, the run recorded {metrics['test_accuracy']:.2f} %)")


if __name__ == "__main__":
    main()
