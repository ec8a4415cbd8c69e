"""Does bf16 train as well as fp32 on a CPU? Three seeds of each, everything else the same.

    python scripts/bf16_parity_cpu.py --data_dir data/cifar10-official     # about 25 minutes

Each run is `python -m helpers.cli` (the notebook's stages): a quarter-width network
(`width_multiplier=0.25`), the improved recipe, 15 epochs on 10,000 official training images
(the first 1,000 of each class, `val_size=0`), batch 128, tested once on official test images
0-999; `amp='auto'` trains in bf16 with channels_last where the CPU computes bf16 natively,
`amp='off'` in fp32, contiguous. Seeds 0, 1 and 2 of each, alternating, so that a slower hour of
the machine falls on both. A run whose metrics.json is in OUT already is not run again, so the
script continues where it stopped. Writes OUT/<precision>-seed<N>/metrics.json, OUT/log.txt and
OUT/comparison.json: each precision's mean ± sample standard deviation, and whether the mean
difference is within two standard deviations of the fp32 seeds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from helpers.files import atomic_write_json  # noqa: E402
from helpers.report import git_commit  # noqa: E402
from helpers.training import cpu_computes_bf16  # noqa: E402
from benchmarks.common import environment, start_log  # noqa: E402

ARMS = {"bf16": "auto", "fp32": "off"}  # name -> amp


def run(args: argparse.Namespace, arm: str, seed: int) -> dict:
    kept = os.path.join(args.out, f"{arm}-seed{seed}")
    if os.path.isfile(os.path.join(kept, "metrics.json")):
        print(f"=== {arm} seed {seed}: done before, kept in {kept}", flush=True)
    else:
        work = os.path.join(args.work, f"{arm}-seed{seed}")
        shutil.rmtree(work, ignore_errors=True)
        command = [sys.executable, "-m", "helpers.cli", "--data_source", "folder", "--data_dir",
                   args.data_dir, "--width_multiplier", "0.25", "--recipe", "improved",
                   "--epochs", str(args.epochs), "--train_subset", str(args.train_subset),
                   "--val_size", "0", "--batch_size", "128", "--seed", str(seed), "--amp",
                   ARMS[arm], "--device", "cpu", "--progress", "lines", "--output_dir", work]
        print(f"=== {arm} seed {seed}: {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "MPLBACKEND": "Agg"})
        print(done.stdout[-3000:], flush=True)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        os.makedirs(kept, exist_ok=True)
        shutil.copy(os.path.join(work, "metrics.json"), kept)
    with open(os.path.join(kept, "metrics.json")) as file:
        return json.load(file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="image folders of the official pixels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train_subset", type=int, default=10_000)
    parser.add_argument("--work", default="outputs/bf16-parity-cpu", help="the runs' own folders")
    parser.add_argument("--out", default="results/bf16-parity-cpu")
    args = parser.parse_args()
    command = start_log(args.out)
    if not cpu_computes_bf16():
        print("this CPU does not compute bf16 natively: amp='auto' trains in fp32 here, and both "
              "arms would be the same", flush=True)
    runs = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        for arm in ARMS:
            runs[arm].append(run(args, arm, seed))
    summary = {}
    for arm, metrics in runs.items():
        accuracies = [m["test_accuracy"] for m in metrics]
        summary[arm] = {"test_accuracy": accuracies, "mean": statistics.mean(accuracies),
                        "std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
                        "training_precision": sorted({m["training_precision"] for m in metrics}),
                        "memory_format": sorted({m["memory_format"] for m in metrics}),
                        "images_per_second": statistics.mean(m["images_per_second"] for m in metrics),
                        "training_s": statistics.mean(m["wall_time_s"] for m in metrics)}
    difference = summary["bf16"]["mean"] - summary["fp32"]["mean"]
    spread = summary["fp32"]["std"]
    verdict = (f"bf16 - fp32 = {difference:+.2f} points; the fp32 seeds' sample std is {spread:.2f}: "
               + ("within" if spread is not None and abs(difference) <= 2 * spread else "NOT within")
               + " two standard deviations")
    print(verdict)
    for arm, entry in summary.items():
        print(f"{arm}: {entry['mean']:.2f} ± {entry['std'] or 0:.2f} % "
              f"({', '.join(f'{a:.2f}' for a in entry['test_accuracy'])}), "
              f"{entry['images_per_second']:.0f} images/s, {entry['training_s']:.0f} s of training")
    first = runs["fp32"][0]
    atomic_write_json(os.path.join(args.out, "comparison.json"), {
        "what": "the same runs in bf16 (amp='auto') and fp32 (amp='off'), three seeds each",
        "command": command, "commit": git_commit(), "environment": environment(torch.device("cpu")),
        "cpu_computes_bf16": cpu_computes_bf16(), "train_data": first["data"]["train"]["name"],
        "test_data": first["data"]["test"]["name"], "test_images": first["test_images"],
        "scale": {"width_multiplier": 0.25, "recipe": "improved", "epochs": args.epochs,
                  "train_images": first["train_images"], "batch_size": 128},
        "arms": summary, "difference": difference, "verdict": verdict})


if __name__ == "__main__":
    main()
