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
from helpers.config import PARAMETER_NAMES, make_config  # noqa: E402


def run_config(metrics: dict, run_folder: str, data_dir: str, figures_dir: str, output_dir: str):
    """The run's own settings, evaluating its model.pt from the image folders into figures_dir."""
    settings = {name: value for name, value in metrics["config"].items()
                if name in PARAMETER_NAMES and name not in ("figures_dir", "output_dir")}
    settings.update(data_source="folder", data_dir=data_dir, resume=False, kaggle_test_pkl=None,
                    model_weights=os.path.join(run_folder, "model.pt"), progress="none",
                    teacher_weights=None, test_subset=None, device="cpu",
                    figures_dir=figures_dir, output_dir=output_dir)
    return make_config(**settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a results/ folder with metrics.json and model.pt")
    parser.add_argument("--data_dir", required=True, help="the image folders the run used")
    parser.add_argument("--figures_dir", default=os.path.join(ROOT, "figures"))
    args = parser.parse_args()
    with open(os.path.join(args.run, "metrics.json")) as file:
        metrics = json.load(file)
    with tempfile.TemporaryDirectory() as scratch:  # the evaluation's metrics.json: not kept
        run = stages.start(run_config(metrics, args.run, args.data_dir, args.figures_dir, scratch))
        data = stages.load(run)
        stages.data_figures(run, data)
        for name, figure in {"training_curves": plots.training_curves(metrics["history"]),
                             "lr_schedule": plots.lr_schedule(metrics["history"])}.items():
            plots.save_figure(figure, args.figures_dir, name)
        result = stages.train(run, data, stages.build_model(run))
        test = stages.evaluate_test(run, data, result)
        stages.evaluation_figures(run, data, test)
        stages.error_figures(run, data, test)
    print(f"figures of {args.run} written to {args.figures_dir} "
          f"(test accuracy here {test.accuracy:.2f} %, the run recorded {metrics['test_accuracy']:.2f} %)")


if __name__ == "__main__":
    main()
