"""Training images per second on a CPU: the command line's default training epoch against its
fp32 path and against a plain PyTorch step, side by side in one run.

    python benchmarks/cpu_training.py --json                    # batches 128 and 256
    python benchmarks/cpu_training.py --batch-sizes 128 --images 640 --rounds 1

Three arms, each a fresh process started in turns (the median of the rounds reported), on
synthetic images, full width (4,697,162 parameters), the reference recipe:

* default: `python -m helpers.cli` training one epoch, amp='auto': bf16 autocast and
  channels_last where the CPU computes bf16 natively (helpers/training.py's
  cpu_computes_bf16), fp32 and contiguous elsewhere;
* off: the same command with amp='off': fp32 and contiguous, the path every CPU run trained
  on before bf16 (now without the page faults that env.keep_freed_memory removes);
* plain: a plain PyTorch SGD step of the same network as people write it (forward,
  cross-entropy, backward, step; fp32, contiguous, the allocator as it comes, no augmentation).

The command line's images per second are what its run records in metrics.json (training steps
with their augmentation, without validation); each arm also reports its user and system CPU
seconds per image, where system time is the kernel's (page faults) share.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common import environment, finish  # noqa: E402

PLAIN = """
import json, resource, sys, time, torch
sys.path.insert(0, {root!r})
from helpers.model import ResNet
torch.manual_seed(0)
network = ResNet().train()
optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
images, labels = torch.randn({batch}, 3, 32, 32), torch.randint(0, 10, ({batch},))

def step():
    loss = torch.nn.functional.cross_entropy(network(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

step()  # as an epoch's first step would be: kernels chosen, memory allocated
before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range({steps}):
    step()
seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"images_per_second": {steps} * {batch} / seconds, "images": {steps} * {batch},
                  "user_s": after.ru_utime - before.ru_utime, "system_s": after.ru_stime - before.ru_stime}}))
"""


def cli_arm(batch_size: int, images: int, amp: str, work: str) -> dict:
    """One epoch of `python -m helpers.cli` with `amp`; its images/s as metrics.json records them.
    CPU seconds are the whole process's, so they count loading and validation too."""
    folder = tempfile.mkdtemp(dir=work)
    command = [sys.executable, "-m", "helpers.cli", "--data_source", "synthetic", "--train_subset",
               str(images + 10), "--val_size", "10", "--test_subset", "10", "--batch_size",
               str(batch_size), "--epochs", "1", "--amp", amp, "--device", "cpu", "--progress",
               "none", "--output_dir", folder]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "MPLBACKEND": "Agg"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.path.join(folder, "metrics.json")) as file:
        metrics = json.load(file)
    return {"images_per_second": metrics["history"][0]["images_per_second"],
            "precision": metrics["training_precision"], "memory_format": metrics["memory_format"],
            "user_s_per_image": (after.ru_utime - before.ru_utime) / images,
            "system_s_per_image": (after.ru_stime - before.ru_stime) / images}


def plain_arm(batch_size: int, images: int) -> dict:
    """A plain PyTorch fp32 step in a process of its own; the steps alone are timed."""
    code = PLAIN.format(root=ROOT, batch=batch_size, steps=max(1, images // batch_size))
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {"images_per_second": measured["images_per_second"], "precision": "fp32",
            "memory_format": "contiguous",
            "user_s_per_image": measured["user_s"] / measured["images"],
            "system_s_per_image": measured["system_s"] / measured["images"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--images", type=int, default=1280, help="training images per epoch")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three arms, in turns")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    # environment() names the CPU: its model, speed flags and whether it computes bf16.
    result = {**environment(torch.device("cpu")), "threads": torch.get_num_threads(),
              "images": args.images, "rounds": args.rounds, "batches": {}}
    with tempfile.TemporaryDirectory() as work:
        for batch_size in args.batch_sizes:
            arms = {"default": lambda: cli_arm(batch_size, args.images, "auto", work),
                    "off": lambda: cli_arm(batch_size, args.images, "off", work),
                    "plain": lambda: plain_arm(batch_size, args.images)}
            measured: Dict[str, List[dict]] = {name: [] for name in arms}
            for _ in range(args.rounds):  # in turns: a busy moment of the machine falls on all
                for name, arm in arms.items():
                    measured[name].append(arm())
            summary = {name: {**rounds[0], **{key: statistics.median(r[key] for r in rounds)
                                              for key in ("images_per_second", "user_s_per_image",
                                                          "system_s_per_image")},
                              "rounds_images_per_second": [r["images_per_second"] for r in rounds]}
                       for name, rounds in measured.items()}
            speed = {name: summary[name]["images_per_second"] for name in arms}
            summary["default_over_off"] = speed["default"] / speed["off"]
            summary["default_over_plain"] = speed["default"] / speed["plain"]
            result["batches"][str(batch_size)] = summary
            print(f"batch {batch_size}: default ({summary['default']['precision']}, "
                  f"{summary['default']['memory_format']}) {speed['default']:.0f} img/s, "
                  f"amp='off' {speed['off']:.0f}, plain fp32 step {speed['plain']:.0f}: default / "
                  f"off {summary['default_over_off']:.2f}x, default / plain "
                  f"{summary['default_over_plain']:.2f}x", flush=True)
            for name in arms:
                print(f"  {name:<8} CPU seconds per image: user "
                      f"{summary[name]['user_s_per_image']:.4f}, system "
                      f"{summary[name]['system_s_per_image']:.4f}", flush=True)
    finish(result, args.json)


if __name__ == "__main__":
    main()
