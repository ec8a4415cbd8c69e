"""Throughput of the per-image DataLoader pipeline against the batched on-device fast path.

    python benchmarks/throughput.py --device cpu --what data --json
    python benchmarks/throughput.py --device cuda --what train --json

The pipelines run side by side in one process, in alternating rounds (median reported), on
the same random uint8 images with the
reference recipe's augmentation (crop, flip, colour jitter, rotation, normalization):

* baseline: torchvision transforms per PIL image in a DataLoader with one worker per core,
  fp32 and the default memory format, eager training step;
* fast: augmentation batched on the device; for `train`, also bf16/fp16 autocast and
  channels_last on CUDA, as the training loop uses them, with the eager training step;
* compiled (`train` only): the fast pipeline with the step that compile=True builds
  (helpers/options/compiled_step.py): torch.compile, with CUDA graphs on CUDA
  (mode="reduce-overhead"). Its warm-up (compiling) is timed apart and reported as
  `compiled_warmup_s`. --no-compiled skips it.

`data` counts augmented images per second delivered on the device (no model); `train` counts
images per second through full SGD steps of the 4,697,162-parameter network. With --json the
last line is one JSON object. Ratios, not absolute numbers, are the point: measure both here.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers.augment import dataloader_batches, epoch_generator, fast_batches  # noqa: E402
from helpers.model import ResNet  # noqa: E402
from helpers.recipes import REFERENCE_AUGMENTATION  # noqa: E402
from helpers.options.compiled_step import choose_step_kind, prepare_step  # noqa: E402
from helpers.step import EAGER  # noqa: E402
from helpers.training import resolve_amp, train_one_epoch  # noqa: E402
from common import environment, finish  # noqa: E402


def timed(batches: Iterator, consume: Callable[[Iterable], int], warmup: int, measured: int,
          device) -> float:
    """Images per second over `measured` batches, after `warmup` batches (worker start-up,
    cudnn autotuning and allocator growth excluded). `consume` takes the batches as one stream,
    as an epoch would, so the GPU can run behind the CPU as it does in training."""
    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    consume(itertools.islice(batches, warmup))
    synchronize()
    started = time.perf_counter()
    images = consume(itertools.islice(batches, measured))
    synchronize()
    return images / (time.perf_counter() - started)


def pin_malloc_threshold() -> bool:
    """Keep glibc from handing large freed blocks back to the OS (Linux only).

    After a DataLoader has run in a process, glibc serves every multi-MB tensor with fresh
    pages, and the page faults cost the batched path about half its speed on this CPU (27-33k
    vs 14-17k images/s, measured). Real training with pipeline="fast" never runs a DataLoader,
    so this puts the fast path back in the state it trains in; it applies to both pipelines
    (the DataLoader workers inherit it). --default-malloc skips it.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -3, -1
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, 128 * 2**20))
    except (OSError, AttributeError):  # not glibc
        return False


def endless(make_epoch: Callable[[int], Iterator]) -> Iterator:
    """Batches of epoch after epoch, so a measurement never runs out of data."""
    epoch = 1
    while True:
        yield from make_epoch(epoch)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--what", choices=("data", "train"), default="data")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 256 (data, or train on cuda), 32 (train on cpu)")
    parser.add_argument("--batches", type=int, default=None, help="measured batches per pipeline")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--no-compiled", action="store_true",
                        help="train: measure baseline and fast only (compiling takes minutes on a CPU)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc thresholds alone (see pin_malloc_threshold)")
    args = parser.parse_args()
    malloc_pinned = False if args.default_malloc else pin_malloc_threshold()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    device = torch.device(args.device)
    cpu_train = args.what == "train" and device.type == "cpu"
    batch_size = args.batch_size or (32 if cpu_train else 256)
    measured = args.batches or (3 if cpu_train else 40 if args.what == "data" else 30)
    warmup = 1 if cpu_train else 5
    workers = os.cpu_count() or 1

    count = max(batch_size * 8, 4096)
    pixels = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 10, count).astype(np.int64)
    device_pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(device)
    device_labels = torch.from_numpy(labels).to(device)

    def baseline_epoch(epoch):
        return dataloader_batches(pixels, labels, REFERENCE_AUGMENTATION, batch_size,
                                  epoch_generator(0, epoch), num_workers=workers,
                                  pin_memory=device.type == "cuda")

    def fast_epoch(epoch):
        return fast_batches(device_pixels, device_labels, REFERENCE_AUGMENTATION, batch_size,
                            epoch_generator(0, epoch))

    def deliver(batches):  # `data`: the batches on the device, as training would receive them
        count = 0
        for images, targets in batches:
            images.to(device, non_blocking=True)
            count += len(targets)
        return count

    def counted(batches, counter):
        for batch in batches:
            counter[0] += len(batch[1])
            yield batch

    warmups = {}

    def trainer(pipeline: str) -> Callable:
        """A `consume` that trains the network on the batches with `pipeline`'s settings."""
        torch.manual_seed(0)
        network = ResNet().to(device)
        channels_last = pipeline != "baseline" and device.type == "cuda"
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9,
                                    fused=(pipeline == "compiled" and device.type == "cuda") or None)
        amp_dtype = resolve_amp("auto" if pipeline != "baseline" else "off", device)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        kind = choose_step_kind(True, device, scaler=scaler)[0] if pipeline == "compiled" else EAGER

        def make(step_class):
            return step_class(network, optimizer, torch.nn.CrossEntropyLoss(), scaler=scaler,
                              amp_dtype=amp_dtype, channels_last=channels_last)

        step, warmups[pipeline], _ = prepare_step(kind, make, next(iter(fast_epoch(0))), [batch_size])

        def steps(batches):
            images = [0]
            train_one_epoch(step, counted(batches, images), epoch=1, check_every=25)
            return images[0]

        steps.kind = step.kind
        return steps

    def measure(make_epoch: Callable, consume: Callable) -> float:
        batches = endless(make_epoch)
        try:
            return timed(batches, consume, warmup, measured, device)
        finally:
            batches.close()  # stops the DataLoader workers, which would compete with the next run

    pipelines = {"baseline": baseline_epoch, "fast": fast_epoch}
    if args.what == "train" and not args.no_compiled:
        pipelines["compiled"] = fast_epoch
    consumers = {name: deliver if args.what == "data" else trainer(name) for name in pipelines}
    # Alternating rounds and the median of each: a noisy machine slows all alike.
    rounds = 1 if cpu_train else 3
    measured_rounds = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, make_epoch in pipelines.items():
            measured_rounds[name].append(measure(make_epoch, consumers[name]))
    speeds = {name: statistics.median(values) for name, values in measured_rounds.items()}
    baseline, fast = speeds["baseline"], speeds["fast"]

    result = {
        "what": args.what,
        "baseline_img_s": round(baseline, 1),
        "fast_img_s": round(fast, 1),
        "ratio": round(fast / baseline, 2),
        "device": args.device,
        "dataloader_workers": workers,
        "batch_size": batch_size,
        "measured_batches": measured,
        "rounds": rounds,
        "malloc_threshold_pinned": malloc_pinned,
        **{f"{name}_rounds_img_s": [round(r, 1) for r in values]
           for name, values in measured_rounds.items()},
        "amp": str(resolve_amp("auto", device)) if args.what == "train" else None,
        **environment(device),
    }
    if "compiled" in speeds:
        result.update(compiled_img_s=round(speeds["compiled"], 1),
                      compiled_ratio=round(speeds["compiled"] / baseline, 2),
                      compiled_step=consumers["compiled"].kind,
                      compiled_warmup_s=round(warmups["compiled"], 1))
    print(f"{args.what} on {args.device}: baseline {baseline:,.0f} img/s, fast {fast:,.0f} img/s "
          f"({fast / baseline:.1f}x), batch {batch_size}")
    if "compiled" in speeds:
        print(f"compiled ({result['compiled_step']}, {result['compiled_warmup_s']} s warm-up): "
              f"{speeds['compiled']:,.0f} img/s ({speeds['compiled'] / baseline:.1f}x the baseline)")
    finish(result, args.json)


if __name__ == "__main__":
    main()
