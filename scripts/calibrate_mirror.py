"""Published, fixed trainers run unchanged on our data, to calibrate what our numbers mean.

    python scripts/calibrate_mirror.py --data_dir /tmp/cifar10-jpeg --runs94 5 --runs96 2
    python scripts/calibrate_mirror.py --measure offset --data_dir /tmp/cifar10-official --runs94 3

airbench94 and airbench96 (the `airbench` package, 0.1.8) publish 94.01 % and 96.05 % test
accuracy on all 10,000 official test images. Two measurements follow from running them here:

* mirror (default): trained and tested on the JPEG mirror, the gap to the published means is what
  JPEG costs any model. Results go to <out>/airbench.json.
* offset: trained on the official training images and tested on official test images 0–999 (all
  of the official test set that is here), the gap is how much easier that sample is than all
  10,000. Results go to <out>/airbench-official.json as {"airbench94":
  {"official_0_999_accuracies": [percent, ...], "published_all_10000": 94.01, ...}, ...}.

The data is checked to be what the measurement needs (helpers/data.py) before any
training, and the results file is rewritten after every run, so a killed session keeps its runs.

How airbench 0.1.8 is driven (read from its source):
* `airbench.train94(run=i)` / `train96(run=i)` train one network with the published settings
  and return only the model; `warmup94()` / `warmup96()` take one step and return None.
  No torch.compile: the first run is slower only from cudnn.benchmark autotuning.
* Both read ./cifar10/train.pt and ./cifar10/test.pt, a path relative to the working
  directory that they hard-code: {'images': uint8 (N, 32, 32, 3), 'labels': int64 (N,),
  'classes': [names]}. A missing file makes them DOWNLOAD official CIFAR-10, so this script
  writes both from the mirror first and checks they exist.
* Accuracy: `airbench.evaluate(model, test_loader, tta_level)` as a fraction (tta_level 2,
  the trainers' own), the call train() itself makes; stored here in percent.
* Seconds: train() prints a table per epoch and an 'eval' row with total_time_seconds, its
  CUDA-event timer over training and the final evaluation (not the per-epoch logging), the
  quantity its README times (3.83 s and 46.3 s on an A100). Wall-clock seconds kept as well.
* It needs CUDA (.cuda(), CUDA events); this script refuses a CPU before any work.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import io
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers.files import atomic_write, atomic_write_json  # noqa: E402
from helpers.data import CIFAR10_CLASSES, load_folder  # noqa: E402
from helpers.report import git_commit  # noqa: E402

# Test accuracy (percent) on the official images, from the headers of lib_airbench94.py
# ("94.01 in n=1000 runs") and lib_airbench96.py ("96.05 in n=200 runs").
PUBLISHED_ACCURACY = {"airbench94": 94.01, "airbench96": 96.05}


# What each measurement needs its data to be, by the names helpers/data.py gives.
NEEDED_DATA = {"mirror": {"train": "CIFAR-10 (JPEG mirror) training images",
                          "test": "CIFAR-10 (JPEG mirror) test images"},
               "offset": {"train": "CIFAR-10 official training images",
                          "test": "CIFAR-10 official test images 0–999"}}
RESULT_FILES = {"mirror": "airbench.json", "offset": "airbench-official.json"}


def write_airbench_data(data_dir: str, dest_dir: str) -> dict:
    """dest_dir/cifar10/{train,test}.pt from the image folders, in airbench's layout; returns
    what each split was recognised as."""
    names = {}
    for split in ("train", "test"):
        image_set, origin, _ = load_folder(data_dir, split)
        names[split] = origin.name
        content = {"images": torch.from_numpy(np.ascontiguousarray(image_set.images, np.uint8)),
                   "labels": torch.from_numpy(image_set.labels.astype(np.int64)),
                   "classes": list(CIFAR10_CLASSES)}
        # Atomic: a half-written file would be read, a missing one would trigger a download.
        atomic_write(os.path.join(dest_dir, "cifar10", f"{split}.pt"),
                     lambda file, content=content: torch.save(content, file))
    return names


def check_data(names: dict, measure: str) -> None:
    """Stop unless the folders hold the data the measurement is about."""
    wrong = {split: name for split, name in names.items() if name != NEEDED_DATA[measure][split]}
    if wrong:
        raise SystemExit(f"--measure {measure} needs {NEEDED_DATA[measure]}, but the folders hold "
                         f"{wrong}; nothing was trained")


def offset_entry(published: float, accuracies: Sequence[float], seconds: Sequence[Optional[float]],
                 wall_seconds: Sequence[float]) -> dict:
    """One trainer's runs on official test images 0–999 and how much easier they are than all
    10,000 (mean minus the published accuracy)."""
    mean = statistics.mean(accuracies)
    return {"official_0_999_accuracies": list(accuracies), "published_all_10000": published,
            "mean": round(mean, 4),
            "std": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else None,
            "offset": round(mean - published, 4), "seconds_per_run": list(seconds),
            "wall_seconds_per_run": list(wall_seconds), "runs": len(accuracies)}


def require_cuda() -> None:
    """Stop with the reason when no CUDA GPU is visible."""
    if not torch.cuda.is_available():
        raise SystemExit("airbench needs a CUDA GPU (it calls .cuda() and times with CUDA "
                         "events); none is available here, so nothing was run.")


def import_airbench():
    """The airbench package, imported only here: a CPU machine never needs it installed."""
    try:
        import airbench
    except ModuleNotFoundError:
        raise SystemExit("airbench is not installed: pip install --no-deps --target /tmp/site "
                         "airbench-0.1.8-py3-none-any.whl, then add /tmp/site to "
                         "PYTHONPATH") from None
    return airbench


def airbench_seconds(printed: str) -> Optional[float]:
    """total_time_seconds of the last 'eval' row in the table that airbench's train() prints."""
    for line in reversed(printed.splitlines()):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1] == "eval":
            return float(cells[6])
    return None


class _Tee(io.TextIOBase):
    """Writes through to a stream and keeps a copy, so airbench's table is shown and parsed."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        return self.copy.write(text)

    def flush(self) -> None:
        self.stream.flush()


def train_runs(airbench, name: str, runs: int) -> Iterator[Tuple[float, Optional[float], float]]:
    """(accuracy %, airbench's seconds, wall seconds) for each of `runs` runs, after its warmup."""
    number = name[-2:]
    getattr(airbench, f"warmup{number}")()
    train = getattr(airbench, f"train{number}")
    tta_level = importlib.import_module(f"airbench.lib_{name}").hyp["net"]["tta_level"]
    test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
    for run in range(runs):
        tee = _Tee(sys.stdout)
        started = time.perf_counter()
        with contextlib.redirect_stdout(tee):
            model = train(run=run)
        wall_seconds = time.perf_counter() - started
        # evaluate() returns a fraction of the test images; percent everywhere in this project.
        accuracy = 100 * airbench.evaluate(model, test_loader, tta_level=tta_level)
        yield round(accuracy, 4), airbench_seconds(tee.copy.getvalue()), round(wall_seconds, 3)


def summarize(published: float, accuracies: Sequence[float], seconds: Sequence[Optional[float]],
              wall_seconds: Sequence[float]) -> dict:
    """One trainer's entry: its runs, their mean, sample std and the gap to the published mean."""
    mean = statistics.mean(accuracies) if accuracies else None
    return {
        "published_official_accuracy": published,
        "mirror_accuracies": list(accuracies),
        "mirror_mean": None if mean is None else round(mean, 4),
        # Sample std (n - 1): undefined for a single run.
        "mirror_std": round(statistics.stdev(accuracies), 4) if len(accuracies) > 1 else None,
        "delta": None if mean is None else round(published - mean, 4),
        "seconds_per_run": list(seconds),
        "wall_seconds_per_run": list(wall_seconds),
        "runs": len(accuracies),
    }


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} runs: need at least 1")
    return value


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="image folders train/ and test/")
    parser.add_argument("--measure", choices=sorted(NEEDED_DATA), default="mirror",
                        help="mirror: the JPEG mirror's cost; offset: how easy official test "
                             "images 0-999 are")
    parser.add_argument("--runs94", type=positive, default=5, help="timed runs of airbench94")
    parser.add_argument("--runs96", type=positive, default=2, help="timed runs of airbench96")
    parser.add_argument("--out", default="results/calibration", help="folder of the results file")
    parser.add_argument("--work", default="/tmp/airbench-work",
                        help="working directory of airbench; gets cifar10/{train,test}.pt")
    parser.add_argument("--only", choices=sorted(PUBLISHED_ACCURACY), help="run one trainer")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    require_cuda()
    airbench = import_airbench()
    output_path = os.path.abspath(os.path.join(args.out, RESULT_FILES[args.measure]))  # before chdir
    data_dir, work_dir = os.path.abspath(args.data_dir), os.path.abspath(args.work)
    started = time.perf_counter()
    names = write_airbench_data(data_dir, work_dir)
    check_data(names, args.measure)
    print(f"wrote {work_dir}/cifar10/{{train,test}}.pt in {time.perf_counter() - started:.0f} s",
          flush=True)
    os.chdir(work_dir)  # airbench hard-codes the relative path cifar10/
    for split in ("train", "test"):
        if not os.path.isfile(os.path.join("cifar10", f"{split}.pt")):
            raise SystemExit(f"{work_dir}/cifar10/{split}.pt is missing; airbench would download "
                             "the official set instead of measuring our data")

    report = {
        "data": names, "measure": args.measure,
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "python": platform.python_version(), "airbench": version("airbench"),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    if args.measure == "mirror":
        report["trainers"] = {}
    plan = {"airbench94": args.runs94, "airbench96": args.runs96}
    for name, runs in plan.items():
        if args.only and name != args.only:
            continue
        accuracies, seconds, wall_seconds = [], [], []
        for accuracy, timed, elapsed in train_runs(airbench, name, runs):
            accuracies.append(accuracy)
            seconds.append(timed)
            wall_seconds.append(elapsed)
            entry = (summarize if args.measure == "mirror" else offset_entry)(
                PUBLISHED_ACCURACY[name], accuracies, seconds, wall_seconds)
            entry["protocol"] = (f"airbench.warmup{name[-2:]}() once (one step, untimed), then "
                                 f"airbench.train{name[-2:]}(run=i) for i < {runs}, unchanged")
            # The offset file keeps each trainer at the top level, as results_tables reads it.
            (report["trainers"] if args.measure == "mirror" else report)[name] = entry
            atomic_write_json(output_path, report)
            print(f"{name} run {len(accuracies)}/{runs}: {accuracy:.2f} % on {names['test']}, "
                  f"{timed} s (airbench), {elapsed:.1f} s wall; published "
                  f"{PUBLISHED_ACCURACY[name]} % on all 10,000", flush=True)
    print(f"wrote {output_path}", flush=True)


if __name__ == "__main__":
    main()
