"""Several training runs at once on one machine, against one run alone: is a large GPU better
used by K runs side by side (seeds, an ablation) than by one run after another?

    python scripts/concurrent_runs.py --runs 4 --out /tmp/concurrency -- \
        --epochs 3 --val_size 0 --data_source folder --data_dir /tmp/cifar10-official

Each run is `python -m helpers.cli` with the options after `--` (or, with --via notebook, the
notebook under papermill with them as -p parameters), its own output_dir (OUT/PHASE/run-K) and
seed K. First one run alone, then K together. A phase's throughput is the training images of
all its runs (training images x epochs, from their metrics.json) per second, counted two ways:
over the phase's wall-clock time (start-up, data loading and evaluation included), and over
training time alone (each run's images over its own training seconds, summed). The ratio of
the two phases is the answer; OUT/concurrency.json holds both phases and their runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helpers.files import atomic_write_json  # noqa: E402


def run_concurrently(commands: Dict[str, List[str]], logs: Dict[str, str],
                     deadline_s: float = float("inf"),
                     finished: Optional[Callable[[str, int], None]] = None) -> Dict[str, int]:
    """Start every command at once (from the repository root, output into its log); wait for
    all, killing those still running at the deadline. Returns each one's exit status, and
    calls `finished(name, status)` as each is collected (so a caller can save as it goes)."""
    started, processes = time.perf_counter(), {}
    for name, command in commands.items():
        os.makedirs(os.path.dirname(logs[name]), exist_ok=True)
        log = open(logs[name], "w")
        processes[name] = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log
    statuses = {}
    for name, (process, log) in processes.items():
        try:
            process.wait(timeout=max(deadline_s - (time.perf_counter() - started), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        statuses[name] = process.returncode
        if finished is not None:
            finished(name, process.returncode)
    return statuses


def as_notebook_parameters(options: List[str]) -> List[str]:
    """helpers.cli's "--name value" options as papermill's "-p name value"."""
    if len(options) % 2:
        raise SystemExit(f"with --via notebook, every option needs a value: {options}")
    return [word for name, value in zip(options[::2], options[1::2])
            for word in ("-p", name.lstrip("-").replace("-", "_"), value)]


def command(folder: str, seed: int, args: argparse.Namespace) -> List[str]:
    if args.via == "notebook":
        return [sys.executable, "-m", "papermill", "final-code.ipynb",
                os.path.join(folder, "report.ipynb"), "--log-output", "-p", "output_dir", folder,
                "-p", "seed", str(seed), "-p", "progress", "lines",
                *as_notebook_parameters(args.options)]
    return [sys.executable, "-m", "helpers.cli", "--output_dir", folder, "--seed", str(seed),
            "--progress", "lines", *args.options]


def phase(name: str, runs: int, args: argparse.Namespace) -> dict:
    """`runs` runs at once; their throughput, wall-clock and training-only."""
    folders = {f"run-{k}": os.path.join(args.out, name, f"run-{k}") for k in range(runs)}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    started = time.perf_counter()
    statuses = run_concurrently({run: command(folder, k, args) for k, (run, folder) in enumerate(folders.items())},
                                {run: os.path.join(folder, "log.txt") for run, folder in folders.items()},
                                args.deadline_s)
    elapsed = time.perf_counter() - started
    per_run = []
    for run, folder in folders.items():
        path = os.path.join(folder, "metrics.json")
        if statuses[run] != 0 or not os.path.isfile(path):
            per_run.append({"run": run, "status": statuses[run], "complete": False})
            continue
        with open(path) as file:
            metrics = json.load(file)
        images = metrics["train_images"] * metrics["epochs_completed"]
        per_run.append({"run": run, "status": 0, "complete": True, "images": images,
                        "wall_time_s": metrics["wall_time_s"], "test_accuracy": metrics["test_accuracy"],
                        "training_step": metrics["training_step"], "device": metrics["device"]})
    complete = [r for r in per_run if r["complete"]]
    images = sum(r["images"] for r in complete)
    return {"runs": runs, "complete": len(complete), "elapsed_s": round(elapsed, 1),
            "images": images, "images_per_s_wall_clock": round(images / elapsed, 1),
            "images_per_s_training": round(sum(r["images"] / r["wall_time_s"] for r in complete), 1),
            "per_run": per_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4, help="runs at once in the second phase")
    parser.add_argument("--via", choices=("cli", "notebook"), default="cli")
    parser.add_argument("--out", required=True, help="a folder per phase and run, and concurrency.json")
    parser.add_argument("--deadline_s", type=float, default=float("inf"),
                        help="stop a phase's runs still running after this many seconds")
    parser.add_argument("options", nargs="*", help="helpers.cli options for every run, after --")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2: one run alone is the first phase")
    result = {"via": args.via, "options": args.options}
    for name, runs in (("alone", 1), ("together", args.runs)):
        result[name] = phase(name, runs, args)
        atomic_write_json(os.path.join(args.out, "concurrency.json"), result)
        print(f"{name}: {runs} run(s), {result[name]['complete']} complete, "
              f"{result[name]['images_per_s_wall_clock']:,.0f} images/s wall-clock, "
              f"{result[name]['images_per_s_training']:,.0f} images/s training", flush=True)
    alone, together = result["alone"], result["together"]
    if alone["complete"] and together["complete"] == args.runs:
        result["ratio_wall_clock"] = round(together["images_per_s_wall_clock"] / alone["images_per_s_wall_clock"], 2)
        result["ratio_training"] = round(together["images_per_s_training"] / alone["images_per_s_training"], 2)
        print(f"{args.runs} runs together: {result['ratio_wall_clock']}x the images per second of "
              f"one alone (wall-clock), {result['ratio_training']}x (training only)")
    atomic_write_json(os.path.join(args.out, "concurrency.json"), result)


if __name__ == "__main__":
    main()
