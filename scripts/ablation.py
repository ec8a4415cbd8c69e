"""One-at-a-time ablation of the improved recipe on the validation split.

    python scripts/ablation.py --data_dir /tmp/cifar10-jpeg --epochs 12 --out results/ablation
    python scripts/ablation.py --data_dir /tmp/cifar10-jpeg --epochs 75 --variants full \
        --out results/ablation-75epochs

Each variant changes one ingredient of the recipe as shipped (through `recipe_overrides`, or
another notebook parameter such as `batch_size`) and trains with `python -m helpers.cli` on the
training images left after holding out `val_size` for validation. Variants are ranked by the final epoch's validation accuracy only: the test
accuracy that the CLI also writes to each metrics.json plays no part, and the README's ablation
table does not show it. The variants run at the same time as separate processes, since one alone
leaves much of a large GPU idle (see benchmarks/profile_step.py). `ablation.json` holds every
variant's numbers and the one chosen.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helpers.files import atomic_write_json  # noqa: E402
from concurrent_runs import run_concurrently  # noqa: E402  (scripts/ is this script's folder)

# name -> recipe_overrides; each changes one ingredient of the improved recipe as shipped.
# "short": the 12-epoch ranking of 2026-11-26 (results/ablation/), which full length reversed.
SHORT_VARIANTS: Dict[str, dict] = {
    "shipped": {},
    "no label smoothing": {"label_smoothing": 0.0},
    "label smoothing 0.2": {"label_smoothing": 0.2},
    "no Cutout": {"cutout_size": 0},
    "no EMA": {"ema_decay": 0.0},
    "no flip TTA": {"tta_flip": False},
    "weight decay 1e-4": {"weight_decay": 1e-4},
    "linear decay": {"schedule": "warmup_linear"},
    "+ jitter and rotation": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2,
                              "rotation_degrees": 10.0},
}
# "full": what fights the 97-99 % training accuracy at 75 epochs (../shared/RECIPES.md), each
# against the shipped recipe at the full length. Parameters other than recipe_overrides are
# given under "parameters" (the batch variant scales its learning rate linearly, as the
# improved recipe does for any batch size).
FULL_VARIANTS: Dict[str, dict] = {
    "shipped": {},
    "MixUp 0.2": {"mixup_alpha": 0.2},
    "MixUp 1.0": {"mixup_alpha": 1.0},
    "CutMix 1.0": {"cutmix_alpha": 1.0},
    "label smoothing 0.2": {"label_smoothing": 0.2},
    "Cutout 12": {"cutout_size": 12},
    "Cutout 20": {"cutout_size": 20},
    "flip + translate TTA": {"tta_translate": 1},
    "EMA 0.9995": {"ema_decay": 0.9995},
    "batch 512": {"parameters": {"batch_size": 512}},
}
VARIANT_SETS = {"short": SHORT_VARIANTS, "full": FULL_VARIANTS}
VARIANTS: Dict[str, dict] = {**SHORT_VARIANTS, **FULL_VARIANTS}


def overrides_of(variant: str) -> dict:
    return {k: v for k, v in VARIANTS[variant].items() if k != "parameters"}


def parameters_of(variant: str) -> dict:
    return VARIANTS[variant].get("parameters", {})
# A variant replaces the shipped recipe only if it beats it by this much on validation: about
# the standard error of an accuracy near 92 % on 5,000 images, so noise alone rarely wins.
MIN_GAIN = 0.3


def folder_name(variant: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in variant.lower()).strip("-").replace("--", "-")


def command(variant: str, args: argparse.Namespace) -> List[str]:
    extra = [word for name, value in parameters_of(variant).items()
             for word in (f"--{name}", str(value))]
    return [sys.executable, "-m", "helpers.cli", "--recipe", "improved",
            "--recipe_overrides", repr(overrides_of(variant)), "--epochs", str(args.epochs),
            "--val_size", str(args.val_size), "--seed", str(args.seed),
            "--data_source", args.data_source, "--data_dir", args.data_dir,
            "--output_dir", os.path.join(args.work, folder_name(variant)),
            "--figures_dir", os.path.join(args.work, folder_name(variant), "figures"),
            "--progress", "lines", *extra, *args.extra]


def run_all(variants: List[str], args: argparse.Namespace) -> Dict[str, dict]:
    """Start every variant at once; wait for all (or the deadline); collect their metrics,
    rewriting ablation.json as each finishes, so that a session cut short keeps what ended."""
    for variant in variants:
        shutil.rmtree(os.path.join(args.work, folder_name(variant)), ignore_errors=True)  # scratch
    outcomes = {}

    def finished(variant: str, status: int) -> None:
        outcomes[variant] = collect(variant, status, args)
        write_summary(outcomes, args)

    run_concurrently({variant: command(variant, args) for variant in variants},
                     {variant: os.path.join(args.out, folder_name(variant), "log.txt")
                      for variant in variants}, args.deadline_s, finished)
    return outcomes


def collect(variant: str, returncode: int, args: argparse.Namespace) -> dict:
    source = os.path.join(args.work, folder_name(variant), "metrics.json")
    outcome = {"variant": variant, "overrides": overrides_of(variant),
               "parameters": parameters_of(variant), "folder": folder_name(variant),
               "returncode": returncode, "epochs": args.epochs, "complete": False}
    if returncode == 0 and os.path.isfile(source):
        with open(source) as file:
            metrics = json.load(file)
        atomic_write_json(os.path.join(args.out, folder_name(variant), "metrics.json"), metrics)
        outcome.update(complete=True, final_val_accuracy=metrics["history"][-1]["val_accuracy"],
                       best_val_accuracy=metrics["best_val_accuracy"],
                       wall_time_s=round(metrics["wall_time_s"], 1))
    return outcome


def choose(outcomes: Dict[str, dict]) -> str:
    """The best complete variant by final validation accuracy, if it beats the shipped recipe
    by MIN_GAIN; otherwise the shipped recipe."""
    complete = {v: o["final_val_accuracy"] for v, o in outcomes.items() if o["complete"]}
    if "shipped" not in complete:
        return "shipped"
    best = max(complete, key=complete.get)
    return best if complete[best] >= complete["shipped"] + MIN_GAIN else "shipped"


def write_summary(outcomes: Dict[str, dict], args: argparse.Namespace) -> str:
    """ablation.json: every variant's outcome so far and the rule's choice among them."""
    chosen = choose(outcomes)
    atomic_write_json(os.path.join(args.out, "ablation.json"), {
        "epochs": args.epochs, "val_size": args.val_size, "seed": args.seed,
        "ranking": "final-epoch validation accuracy", "min_gain": MIN_GAIN, "chosen": chosen,
        "chosen_overrides": overrides_of(chosen), "chosen_parameters": parameters_of(chosen),
        "variants": list(outcomes.values())})
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--data_source", default="folder")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--val_size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "ablation"),
                        help="metrics.json and log.txt per variant, and ablation.json")
    parser.add_argument("--work", default="/tmp/ablation", help="checkpoints, model.pt, figures")
    parser.add_argument("--variants", choices=sorted(VARIANT_SETS), default="short",
                        help="short: the 12-epoch set; full: the full-length set")
    parser.add_argument("--only", default=None, help="comma-separated variant names")
    parser.add_argument("--deadline_s", type=float, default=float("inf"),
                        help="stop variants still running after this many seconds")
    parser.add_argument("extra", nargs="*", help="more helpers.cli options, after --")
    args = parser.parse_args()
    variants = list(VARIANT_SETS[args.variants]) if args.only is None else args.only.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")

    outcomes = run_all(variants, args)
    chosen = write_summary(outcomes, args)
    for outcome in outcomes.values():
        accuracy = f"{outcome['final_val_accuracy']:6.2f} %" if outcome["complete"] else "incomplete"
        print(f"{outcome['variant']:<24} {accuracy}")
    print(f"chosen: {chosen} {VARIANTS[chosen]}")
    # The last line is the chosen overrides, for a shell script to pass on.
    print(repr(overrides_of(chosen)))


if __name__ == "__main__":
    main()
