"""A smaller student trained alone against the same student distilled from a committed teacher,
at a scale a 2-core CPU affords, in one run:

    python3 scripts/distillation_cpu.py --data_dir /tmp/cifar10-official --out results/distillation-cpu

The full-scale version (all 50,000 images, 75 epochs, on a GPU) is the same script with
`--train_subset 0 --epochs 75 --batch_size 256 --device auto --out results/distillation-gpu`.

Both arms are the notebook's pipeline (`python -m helpers.cli`) with the same parameters, data,
epochs, seed and recipe; the distilled arm adds `teacher_weights` and the distillation loss
(`distill_weight`, `distill_temperature`: Hinton et al. 2015's usual values, not tuned here).
Nothing is chosen on the test images: each arm's last epoch is tested once. Then both students
are tested again side by side on the same test images (answers that changed between them), and
the CPU images/s of the student and of the teacher are measured in turns. Writes OUT/alone/ and
OUT/distilled/ (metrics.json, model.pt), OUT/comparison.json and OUT/log.txt.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from helpers import cli  # noqa: E402
from helpers.augment import to_nchw  # noqa: E402
from helpers.data import load_data  # noqa: E402
from helpers.files import atomic_write_json, read_weights  # noqa: E402
from helpers.model import count_parameters  # noqa: E402
from helpers.recipes import TestTimeAugmentation  # noqa: E402
from helpers.report import git_commit  # noqa: E402
from helpers.settings import make_config  # noqa: E402
from helpers.options.sizes import (accuracy_entry, cpu_images_per_second, paired_changes,  # noqa: E402
                           predictions)
from benchmarks.common import environment, start_log  # noqa: E402


def arm_parameters(args: argparse.Namespace, output_dir: str, distilled: bool) -> dict:
    """The notebook parameters of one arm; the arms differ only in the teacher."""
    parameters = {"data_source": "folder", "data_dir": args.data_dir, "recipe": args.recipe,
                  "width_multiplier": args.width_multiplier,
                  "train_subset": args.train_subset or None, "val_size": 0, "epochs": args.epochs,
                  "batch_size": args.batch_size, "seed": args.seed, "device": args.device,
                  "progress": "lines",
                  "output_dir": output_dir}
    if distilled:
        parameters["teacher_weights"] = args.teacher
        parameters["recipe_overrides"] = {"distill_weight": args.distill_weight,
                                          "distill_temperature": args.temperature}
    return parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="image folders of the official pixels")
    parser.add_argument("--teacher", default="results/improved-nocutout-seed1/model.pt")
    parser.add_argument("--width_multiplier", type=float, default=0.25)
    parser.add_argument("--recipe", default="improved")
    parser.add_argument("--train_subset", type=int, default=10_000, help="0: all 50,000")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where the arms train ('auto' on a GPU "
                        "machine for the full-scale version); the speed is measured on the CPU")
    parser.add_argument("--distill_weight", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--work", default="outputs/distillation-cpu", help="the runs' own folders")
    parser.add_argument("--out", default="results/distillation-cpu")
    args = parser.parse_args()
    command = start_log(args.out)

    arms = {}
    for arm in ("alone", "distilled"):
        work = os.path.join(args.work, arm)
        shutil.rmtree(work, ignore_errors=True)
        parameters = arm_parameters(args, work, arm == "distilled")
        print(f"\n=== student {arm}: python -m helpers.cli "
              + " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in parameters.items()))
        metrics = cli.main([f"--{k}={v}" for k, v in parameters.items()])
        kept = os.path.join(args.out, arm)
        os.makedirs(kept, exist_ok=True)
        for name in ("metrics.json", "model.pt"):
            shutil.copy(os.path.join(work, name), os.path.join(kept, name))
        arms[arm] = {"folder": kept, "metrics": metrics}

    # Both students on the same test images, and their speed beside the teacher's.
    config = make_config(data_source="folder", data_dir=args.data_dir, device="cpu",
                         model_weights=os.path.join(args.out, "alone", "model.pt"),
                         output_dir=os.path.join(args.work, "comparison"))
    data = load_data(config)
    images, labels = to_nchw(data.test.images), data.test.labels
    settings = arms["alone"]["metrics"]["recipe_settings"]  # both arms test with these views
    tta = TestTimeAugmentation(settings["tta_flip"], settings["tta_translate"])
    networks = {arm: read_weights(os.path.join(args.out, arm, "model.pt"))[0] for arm in arms}
    predicted = {arm: predictions(network, images, tta) for arm, network in networks.items()}
    teacher = read_weights(args.teacher)[0]
    speed = cpu_images_per_second({"student": networks["alone"], "teacher": teacher}, images)
    comparison = {
        "what": "the same student trained alone and distilled: same data, epochs, seed, recipe",
        "command": command, "commit": git_commit(), "environment": environment(torch.device("cpu")),
        "scale": {"train_images": arms["alone"]["metrics"]["train_images"], "epochs": args.epochs,
                  "batch_size": args.batch_size, "seed": args.seed, "recipe": args.recipe},
        "train_data": arms["alone"]["metrics"]["data"]["train"]["name"],
        "test_data": data.origins["test"].name,
        "teacher": {"path": args.teacher, "params": count_parameters(teacher),
                    "cpu": speed["teacher"]},
        "distillation": {"distill_weight": args.distill_weight, "distill_temperature": args.temperature},
        "student": {"width_multiplier": args.width_multiplier,
                    "params": count_parameters(networks["alone"]), "cpu": speed["student"]},
        "arms": {arm: {"folder": arm, **accuracy_entry(predicted[arm], labels),
                       "model_bytes": os.path.getsize(os.path.join(args.out, arm, "model.pt")),
                       "training_s": arms[arm]["metrics"]["wall_time_s"],
                       "pipeline_test_accuracy": arms[arm]["metrics"]["test_accuracy"]}
                 for arm in arms},
        "distilled_vs_alone": paired_changes(predicted["alone"], predicted["distilled"], labels),
    }
    atomic_write_json(os.path.join(args.out, "comparison.json"), comparison)
    print("\n=== comparison")
    for arm, entry in comparison["arms"].items():
        print(f"student {arm:<9} {entry['text']} on {comparison['test_data']}, "
              f"{entry['training_s']:.0f} s of training")
    print(f"answers changed: {comparison['distilled_vs_alone']}")
    print(f"CPU images/s: student {speed['student']['images_per_second']:.0f}, "
          f"teacher {speed['teacher']['images_per_second']:.0f}")


if __name__ == "__main__":
    main()
