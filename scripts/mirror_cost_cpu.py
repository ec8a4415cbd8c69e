"""What training on the JPEG mirror costs, measured at quarter width on a CPU: the report's
reference recipe once on the official training images and once on the mirror's, both tested on
official test images 0-999, side by side.

    python scripts/mirror_cost_cpu.py --official data/cifar10-official --mirror data/cifar10-jpeg

Each run is `python -m helpers.cli` (the notebook's stages): `width_multiplier=0.25`, the
reference recipe, 75 epochs, all 50,000 training images (`val_size=0`), batch 256, seed 0, on
this CPU (about an hour each where the CPU computes bf16 natively). The runs write into
OUT/official/ and OUT/mirror/ themselves, so their checkpoint.pt (2.4 MB) can be committed as
they go; started again, the script resumes a run that has a checkpoint.pt and no metrics.json,
and skips one that has finished. The mirror-trained run tests on the mirror's 10,000 test images;
its model.pt is then evaluated on official test images 0-999 (OUT/mirror-official-0-999/), and
both networks predict those images again side by side (answers that became right and wrong):
OUT/comparison.json. Figures go to WORK, not into OUT; OUT/*/log.txt holds each run's log.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from helpers.data import load_data  # noqa: E402
from helpers.files import atomic_write_json, read_weights  # noqa: E402
from helpers.recipes import NO_TTA  # noqa: E402
from helpers.report import git_commit  # noqa: E402
from helpers.settings import make_config  # noqa: E402
from helpers.options.sizes import accuracy_entry, paired_changes, predictions  # noqa: E402
from helpers.augment import to_nchw  # noqa: E402
from benchmarks.common import environment  # noqa: E402

TRAINING = ["--width_multiplier", "0.25", "--recipe", "reference", "--epochs", "75",
            "--val_size", "0", "--batch_size", "256", "--seed", "0", "--device", "cpu",
            "--progress", "lines"]


def cli(folder: str, options: list, work: str) -> None:
    """`python -m helpers.cli` into `folder`, its log appended to folder/log.txt."""
    os.makedirs(folder, exist_ok=True)
    command = [sys.executable, "-m", "helpers.cli", *options, "--output_dir", folder,
               "--figures_dir", os.path.join(work, os.path.basename(folder), "figures")]
    with open(os.path.join(folder, "log.txt"), "a") as log:
        log.write("$ python -m helpers.cli " + " ".join(command[3:]) + "\n")
        log.flush()
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed: see {folder}/log.txt")


def train(folder: str, data_dir: str, work: str) -> None:
    """Train (or resume, or leave a finished run as it is) into `folder`."""
    if os.path.isfile(os.path.join(folder, "metrics.json")):
        print(f"{folder}: finished before", flush=True)
        return
    resume = ["--resume", "True"] if os.path.isfile(os.path.join(folder, "checkpoint.pt")) else []
    print(f"{folder}: {'resuming' if resume else 'training'} on {data_dir}", flush=True)
    cli(folder, ["--data_source", "folder", "--data_dir", data_dir, *TRAINING, *resume], work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="image folders of the official pixels")
    parser.add_argument("--mirror", required=True, help="image folders of the JPEG mirror")
    parser.add_argument("--work", default="outputs/mirror-cost-cpu", help="figures of the runs")
    parser.add_argument("--out", default="results/mirror-cost-cpu")
    args = parser.parse_args()
    os.chdir(ROOT)
    official, mirror = os.path.join(args.out, "official"), os.path.join(args.out, "mirror")
    train(official, args.official, args.work)
    train(mirror, args.mirror, args.work)
    evaluation = os.path.join(args.out, "mirror-official-0-999")
    if not os.path.isfile(os.path.join(evaluation, "metrics.json")):
        cli(evaluation, ["--data_source", "folder", "--data_dir", args.official,
                         "--model_weights", os.path.join(mirror, "model.pt"), "--device", "cpu",
                         "--progress", "lines"], args.work)
    # Both networks on the same official test images 0-999, side by side.
    data = load_data(make_config(data_source="folder", data_dir=args.official,
                                 model_weights=os.path.join(official, "model.pt")))
    images, labels = to_nchw(data.test.images), data.test.labels
    predicted = {}
    for name, folder in (("official", official), ("mirror", mirror)):
        network, tta = read_weights(os.path.join(folder, "model.pt"))
        predicted[name] = predictions(network, images, tta or NO_TTA)
    runs = {}
    for name, folder in (("official", official), ("mirror", mirror),
                         ("mirror on official test images 0-999", evaluation)):
        with open(os.path.join(folder, "metrics.json")) as file:
            metrics = json.load(file)
        runs[name] = {"folder": folder, "train_data": metrics["data"].get("train", {}).get("name"),
                      "test_data": metrics["data"]["test"]["name"],
                      "test_accuracy": metrics["test_accuracy"], "test_images": metrics["test_images"],
                      "training_s": metrics["wall_time_s"], "commit": metrics["commit"],
                      "training_precision": metrics.get("training_precision"),
                      "images_per_second": metrics.get("images_per_second")}
    comparison = {
        "what": "the reference recipe at quarter width, trained on the official training images "
                "and on the JPEG mirror's, tested on the same official test images 0-999",
        "commit": git_commit(), "environment": environment(torch.device("cpu")),
        "test_data": data.origins["test"].name, "runs": runs,
        "official_trained": accuracy_entry(predicted["official"], labels),
        "mirror_trained": accuracy_entry(predicted["mirror"], labels),
        "mirror_vs_official": paired_changes(predicted["official"], predicted["mirror"], labels)}
    comparison["cost_points"] = (comparison["official_trained"]["test_accuracy"]
                                 - comparison["mirror_trained"]["test_accuracy"])
    atomic_write_json(os.path.join(args.out, "comparison.json"), comparison)
    changes = comparison["mirror_vs_official"]
    print(f"on {comparison['test_data']}: trained on the official images "
          f"{comparison['official_trained']['text']}; on the mirror "
          f"{comparison['mirror_trained']['text']}; cost {comparison['cost_points']:+.2f} points "
          f"({changes['now_wrong']} answers became wrong, {changes['now_right']} right)")


if __name__ == "__main__":
    main()
