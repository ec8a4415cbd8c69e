"""Where a training step's time goes: GPU busy time against wall time, the top kernels, and
how often the CPU had to wait for the GPU.

    python benchmarks/profile_step.py --recipe reference --json                 # compile="auto"
    python benchmarks/profile_step.py --recipe reference --compile False --json  # the eager step
    python benchmarks/profile_step.py --device cpu --batch-size 256 --steps 4 --amp off --default-malloc

The step is training's own (helpers/training.py's start_training: the fast pipeline, the
recipe's augmentation, schedule and EMA, autocast and channels_last on CUDA, and the training
step `--compile` chooses, warmed up and captured before measuring), on random uint8 images. Three measurements:

* wall: milliseconds per step over `--steps` steps, without the profiler;
* kernels: GPU kernel milliseconds per step from torch.profiler; kernels / wall is the share of
  the time the GPU computes. Far below 1, the CPU cannot queue work fast enough (launch-bound);
* waits: calls that made the CPU wait for the GPU during those steps, counted by
  torch.cuda.set_sync_debug_mode (CUDA only; the epoch's final loss check is one).

On a CPU, in place of kernels: the operators with the most self CPU time per step, and the
user and system CPU seconds per step (getrusage), with memory kept in the process as training
keeps it (helpers/env.py's keep_freed_memory) or, with --default-malloc, as glibc does alone.
"""
from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import time
import warnings

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers.augment import epoch_generator, fast_batches  # noqa: E402
from helpers.env import keep_freed_memory  # noqa: E402
from helpers.options.compiled_step import choose_step_kind, prepare_step  # noqa: E402
from helpers.model import ResNet  # noqa: E402
from helpers.settings import make_config, recipe_of  # noqa: E402
from helpers.step import EAGER  # noqa: E402
from helpers.training import (resolve_amp, start_training, train_one_epoch,  # noqa: E402
                              uses_channels_last)
from common import environment, finish  # noqa: E402


def kernel_milliseconds(event) -> float:
    """An event's own GPU time (the attribute's name changed across torch versions)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return getattr(event, name) / 1000
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=("reference", "improved"), default="reference")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compile", default="auto", choices=("auto", "True", "False"),
                        help="the training step: auto (as training chooses), True, False (eager)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--top", type=int, default=12, help="kernels listed")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"),
                        help="the precision of training (CPU: auto is bf16 where native)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="on a CPU, leave glibc's malloc as it is (training keeps freed memory)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    kept = not cuda and not args.default_malloc and keep_freed_memory()

    config = make_config(recipe=args.recipe, batch_size=args.batch_size, device=args.device,
                         compile=args.compile, amp=args.amp)
    recipe = recipe_of(config)
    torch.manual_seed(0)
    count = args.batch_size * (2 * args.steps + 10)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)).to(device)
    labels = torch.from_numpy(rng.integers(0, 10, count)).to(device)
    amp_dtype = resolve_amp(config.amp, device)
    training = start_training(ResNet(), recipe, epochs=75, steps_per_epoch=count // args.batch_size,
                              device=device, amp_dtype=amp_dtype,
                              channels_last=uses_channels_last(device, amp_dtype))

    def epoch(number: int):
        return fast_batches(images, labels, recipe.augmentation, args.batch_size,
                            epoch_generator(0, number))

    kind, _ = choose_step_kind(config.compile, device, scaler=training.scaler)
    step, warmup_s, _ = prepare_step(kind, training.make_step,
                                     next(iter(epoch(0))) if kind != EAGER else None, [args.batch_size])
    batches = itertools.chain.from_iterable(epoch(number) for number in itertools.count(1))

    def run(steps: int) -> float:
        """Seconds for `steps` training steps, streamed as in an epoch."""
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        train_one_epoch(step, itertools.islice(batches, steps), epoch=1,
                        after_step=training.after_step, check_every=25)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    run(2 if not cuda else 10)  # kernels chosen, cudnn autotuning, allocator growth
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall_ms = 1000 * run(args.steps) / args.steps
    after = resource.getrusage(resource.RUSAGE_SELF)
    user_s, system_s = ((after.ru_utime - before.ru_utime) / args.steps,
                        (after.ru_stime - before.ru_stime) / args.steps)

    waits = None
    if cuda:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            run(args.steps)
            torch.cuda.set_sync_debug_mode("default")
        waits = sum("synchroniz" in str(w.message) for w in caught)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        profiled_s = run(args.steps)
    # GPU kernels only: an operator's entry also counts the kernels it launched, and a GPU
    # user annotation (e.g. "Optimizer.step#SGD.step") spans the kernels inside it.
    annotations = {e.name for e in profiler.events() if getattr(e, "is_user_annotation", False)}
    events = [e for e in profiler.key_averages() if e.device_type == DeviceType.CUDA
              and kernel_milliseconds(e) > 0 and e.key not in annotations]
    kernel_ms = sum(kernel_milliseconds(e) for e in events) / args.steps
    top = sorted(events, key=kernel_milliseconds, reverse=True)[:args.top]
    # On a CPU: the operators by their own CPU time (not their children's), summed over threads.
    operators = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    cpu_total = sum(e.self_cpu_time_total for e in operators)
    top_cpu = sorted(operators, key=lambda e: e.self_cpu_time_total, reverse=True)[:args.top]

    result = {
        "recipe": args.recipe,
        "training_step": step.kind,
        "warmup_s": round(warmup_s, 1),
        **environment(device),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "wall_ms_per_step": round(wall_ms, 3),
        "images_per_s": round(1000 * args.batch_size / wall_ms, 1),
        "kernel_ms_per_step": round(kernel_ms, 3) if cuda else None,
        "gpu_busy_share": round(kernel_ms / wall_ms, 3) if cuda else None,
        "profiled_wall_ms_per_step": round(1000 * profiled_s / args.steps, 3),
        "waits_for_gpu": waits,
        "top_kernels": [{"name": e.key[:90], "ms_per_step": round(kernel_milliseconds(e) / args.steps, 3),
                         "calls_per_step": round(e.count / args.steps, 1)} for e in top],
        "amp": args.amp, "training_precision": str(amp_dtype or "fp32"),
        "channels_last": uses_channels_last(device, amp_dtype), "freed_memory_kept": kept,
        "user_s_per_step": None if cuda else round(user_s, 3),
        "system_s_per_step": None if cuda else round(system_s, 3),
        "top_cpu_operators": None if cuda else [
            {"name": e.key[:90], "self_ms_per_step": round(e.self_cpu_time_total / 1000 / args.steps, 2),
             "share": round(e.self_cpu_time_total / cpu_total, 3),
             "calls_per_step": round(e.count / args.steps, 1)} for e in top_cpu],
    }
    print(f"{args.recipe} on {result['device_name']}, {step.kind} step: {wall_ms:.2f} ms per step of "
          f"{args.batch_size} ({result['images_per_s']:,.0f} img/s)")
    if cuda:
        print(f"GPU kernels {kernel_ms:.2f} ms per step: busy {kernel_ms / wall_ms:.0%} of the time; "
              f"{waits} waits for the GPU in {args.steps} steps")
    for kernel in result["top_kernels"]:
        print(f"  {kernel['ms_per_step']:8.3f} ms  x{kernel['calls_per_step']:<6} {kernel['name']}")
    if not cuda:
        print(f"{result['training_precision']}, channels_last {result['channels_last']}, freed memory "
              f"kept {kept}: CPU seconds per step: user {user_s:.2f}, system {system_s:.2f}")
        for operator in result["top_cpu_operators"]:
            print(f"  {operator['self_ms_per_step']:9.1f} ms  {operator['share']:6.1%}  "
                  f"x{operator['calls_per_step']:<6} {operator['name']}")
    finish(result, args.json)


if __name__ == "__main__":
    main()
