"""The report's recipe on the report's data, on a CPU: the full reference network trained on all
50,000 official training images, tested on official test images 0-999.

    python scripts/reference_official_cpu.py          # start, resume, or skip a finished run
    python scripts/reference_official_cpu.py keep     # before stopping: the checkpoint to commit
    python scripts/reference_official_cpu.py measure  # once finished (train runs it too)

The run is `python -m helpers.cli` with the notebook's defaults (reference recipe, full width,
75 epochs, batch 256, seed 0, bf16 + channels_last where the CPU computes bf16, evaluation in
fp32) except `data_source folder`, `data_dir data/cifar10-official`, `val_size 0` (all 50,000
training images, as the report trained), `test_each_epoch True` (it chooses nothing) and
`progress lines`. About 7.5 hours on a 2-core CPU with AVX-512 BF16, so it runs in stretches:

- It trains from a git worktree at the commit where it started (WORK/code), so the repository
  may change while it runs; the commit is kept in OUT/run.json and the worktree is made again at
  it on a new machine. The images are unpacked into WORK/code/data/cifar10-official from
  ../shared/data/cifar10-official (always the same `data_dir`, which a resumed run must match).
- Its files (checkpoint.pt, best.pt, model.pt, metrics.json, log.txt) are written to WORK/output,
  outside the repository. `keep` copies checkpoint.pt (about 38 MB) and log.txt into OUT for one
  commit at the end of a stretch; the next stretch resumes from whichever copy is further on.
- Where the CPU does not compute bf16 natively it refuses: fp32 there is several times slower,
  and a bf16 checkpoint would go on in emulated bf16.
- Once the 75 epochs are done, metrics.json, model.pt (float16) and log.txt are copied into OUT
  and the committed checkpoint.pt is removed (best.pt is never committed).

- Then, from this checkout's code (`measure`), four measurements beside the report's 93.41 %
  and the mirror-trained reference network (REFERENCE, full width, trained on an H200 on the
  JPEG mirror): (1) the accuracy on official test images 0-999 with its 95 % Wilson interval,
  and whether 93.41 % lies inside it; (2) both networks on those images, paired: answers that
  became right and wrong, McNemar's exact p (OUT/comparison.json); (3) the same weights on the
  JPEG mirror's 10,000 test images, an evaluation like any other (OUT/mirror-test/); (4) both
  networks under shift, on the same corrupted copies of images 0-999
  (scripts/under_shift_cpu.py into OUT/under-shift/). About 25 minutes on 2 cores, twice that
  beside a training run; (4) is most of it, about 11 minutes a network. The mirror is unpacked
  from ../shared/data/cifar10-jpeg-packed.npz into data/cifar10-jpeg.

- Last, once, when no other change to the notebook is pending: the committed notebook rendered
  as an evaluation of these weights, with the run's recorded history and the under-shift section:

      python scripts/render_notebook.py \
          -p model_weights results/reference-official-cpu-seed0/model.pt -p data_source folder \
          -p data_dir data/cifar10-official -p corruptions True -p output_dir outputs/rendering

WORK defaults to ../runs/reference-official-cpu-seed0 beside the repository, OUT to
results/reference-official-cpu-seed0.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.common import environment  # noqa: E402
from helpers.augment import to_nchw  # noqa: E402
from helpers.data import load_data  # noqa: E402
from helpers.env import cpu_record  # noqa: E402
from helpers.files import atomic_write_json, load_checkpoint, read_weights  # noqa: E402
from helpers.options.sizes import accuracy_entry, paired_changes, predictions  # noqa: E402
from helpers.recipes import NO_TTA  # noqa: E402
from helpers.report import REFERENCE_TEST_ACCURACY, git_commit  # noqa: E402
from helpers.settings import make_config  # noqa: E402
from helpers.training import cpu_computes_bf16  # noqa: E402
from scripts.mirror_cost_cpu import cli  # noqa: E402
from scripts.results_tables import mcnemar_exact_p  # noqa: E402

DATA_DIR = "data/cifar10-official"  # relative to the worktree; a resumed run must match it
TRAINING = ["--data_source", "folder", "--data_dir", DATA_DIR, "--val_size", "0",
            "--test_each_epoch", "True", "--progress", "lines"]
RELEASED = ("metrics.json", "model.pt", "log.txt")
MIRROR_DIR = "data/cifar10-jpeg"  # the JPEG mirror's image folders, for measurement 3
# The mirror-trained reference network (full width, on an H200) that the run is set beside.
REFERENCE = "results/reference-seed0/model.pt"


def git(*arguments: str, cwd: str = ROOT) -> str:
    return subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def log(path: str, line: str) -> None:
    """Print a line and append it to the run's log."""
    print(line, flush=True)
    with open(path, "a") as file:
        file.write(line + "\n")


def machine_lines() -> list:
    """What the log says at every start: the CPU, its flags, torch, and which rule applies."""
    cpu = cpu_record()
    native = cpu_computes_bf16()
    rule = ("this CPU computes bf16 natively: train (or continue) here" if native else
            "this CPU has no native bf16 (AVX2 only): refuse, fp32 would be several times "
            "slower and a bf16 checkpoint would go on in emulated bf16")
    return [f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"# CPU: {cpu['cpu_model']}, {os.cpu_count()} cores, flags "
            f"{' '.join(cpu['cpu_flags']) or 'none of ' + 'avx2 avx512_bf16 amx_bf16'}",
            f"# torch {torch.__version__}, Python {sys.version.split()[0]}",
            f"# cpu_computes_bf16: {native}; {rule}"]


def pinned_commit(out: str, code: str) -> str:
    """The commit the run trains from: OUT/run.json's, else the worktree's, else main's HEAD."""
    record = os.path.join(out, "run.json")
    if os.path.isfile(record):
        with open(record) as file:
            return json.load(file)["commit"]
    if os.path.isdir(code):
        return git("rev-parse", "HEAD", cwd=code)
    return git("rev-parse", "HEAD")


def make_worktree(code: str, commit: str) -> None:
    """WORK/code: a worktree of this repository at `commit` (detached), made once per machine."""
    if os.path.isdir(code):
        have = git("rev-parse", "HEAD", cwd=code)
        if have != commit:
            raise SystemExit(f"{code} is at {have[:7]}, the run at {commit[:7]}: remove it "
                             f"(git worktree remove --force {code}) and start again")
        return
    git("worktree", "prune")
    git("worktree", "add", "--detach", code, commit)


def unpack_images(target: str, unpack: str) -> None:
    """Image folders at `target` made by the shared copy's `unpack` script (seconds), unless
    they are there."""
    if os.path.isdir(os.path.join(target, "train")) and os.path.isdir(os.path.join(target, "test")):
        return
    if not os.path.isfile(unpack):
        raise SystemExit(f"no {unpack}: the images are needed (--shared names the folder that "
                         "holds data/)")
    subprocess.run([sys.executable, unpack, target], check=True)


def epochs_done(path: str) -> int:
    return load_checkpoint(path)["epoch"] if os.path.isfile(path) else 0


def take_further_checkpoint(out: str, output: str, log_path: str) -> None:
    """Resume from the committed checkpoint where it is further on than this machine's."""
    committed, here = os.path.join(out, "checkpoint.pt"), os.path.join(output, "checkpoint.pt")
    if epochs_done(committed) > epochs_done(here):
        log(log_path, f"# this machine's run is behind the committed checkpoint "
                      f"({epochs_done(here)} < {epochs_done(committed)} epochs): continuing "
                      "from the committed one")
        shutil.copyfile(committed, here)
        # The log goes on from the committed one too: its earlier stretches, then this start's.
        committed_log = os.path.join(out, "log.txt")
        if os.path.isfile(committed_log):
            with open(committed_log) as file:
                earlier = file.read()
            with open(log_path) as file:
                now = file.read()
            with open(log_path, "w") as file:
                file.write(earlier + now)


def train(work: str, out: str, shared: str) -> None:
    code, output = os.path.join(work, "code"), os.path.join(work, "output")
    os.makedirs(output, exist_ok=True)
    log_path = os.path.join(output, "log.txt")
    if os.path.isfile(os.path.join(out, "metrics.json")):
        print(f"{out}: finished before", flush=True)
        measure(out, shared)
        return
    for line in machine_lines():
        log(log_path, line)
    if not cpu_computes_bf16():
        raise SystemExit("refused: this CPU does not compute bf16 natively (see the log)")
    commit = pinned_commit(out, code)
    make_worktree(code, commit)
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "run.json"), {
        "commit": commit, "command": "python -m helpers.cli " + " ".join(TRAINING),
        "what": "the reference recipe, full width, on all 50,000 official training images, "
                "tested on official test images 0-999, on a CPU"})
    unpack_images(os.path.join(code, DATA_DIR),
                  os.path.join(shared, "data", "cifar10-official", "unpack.py"))
    if not os.path.isfile(os.path.join(output, "metrics.json")):
        take_further_checkpoint(out, output, log_path)
        resume = ["--resume", "True"] if os.path.isfile(os.path.join(output, "checkpoint.pt")) \
            else []
        command = [sys.executable, "-m", "helpers.cli", *TRAINING, *resume,
                   "--output_dir", output, "--figures_dir", os.path.join(work, "figures")]
        log(log_path, f"# code at {commit[:7]} in {code}\n$ python -m helpers.cli "
                      + " ".join(command[3:]))
        with open(log_path, "a") as file:
            done = subprocess.run(command, cwd=code, stdout=file, stderr=subprocess.STDOUT,
                                  env={**os.environ, "MPLBACKEND": "Agg",
                                       "PYTHONUNBUFFERED": "1"})
        if done.returncode:
            raise SystemExit(f"training stopped (exit {done.returncode}): see {log_path}")
    release(output, out)
    measure(out, shared)


def release(output: str, out: str) -> None:
    """The finished run's files into OUT, WORK named in its records as the path from the
    repository (no local path); its committed checkpoint out of the tree."""
    work = os.path.dirname(output)
    for name in RELEASED:
        if name == "model.pt":
            shutil.copyfile(os.path.join(output, name), os.path.join(out, name))
            continue
        with open(os.path.join(output, name)) as file:
            text = file.read()
        with open(os.path.join(out, name), "w") as file:
            file.write(text.replace(work, os.path.relpath(work, ROOT)))
    if os.path.isfile(os.path.join(out, "checkpoint.pt")):
        os.remove(os.path.join(out, "checkpoint.pt"))
    print(f"finished: {', '.join(RELEASED)} in {out}; commit them (and the checkpoint's removal)",
          flush=True)


def keep(work: str, out: str) -> None:
    """Copy an unfinished run's checkpoint.pt and log.txt into OUT, to commit them."""
    output = os.path.join(work, "output")
    if os.path.isfile(os.path.join(output, "metrics.json")):
        release(output, out)
        return
    here = os.path.join(output, "checkpoint.pt")
    if epochs_done(here) <= epochs_done(os.path.join(out, "checkpoint.pt")):
        raise SystemExit(f"nothing new to keep: {here} is not further on than {out}'s")
    shutil.copyfile(here, os.path.join(out, "checkpoint.pt"))
    shutil.copyfile(os.path.join(output, "log.txt"), os.path.join(out, "log.txt"))
    print(f"kept: checkpoint.pt after epoch {epochs_done(here)} and log.txt in {out}", flush=True)


def measure(out: str, shared: str) -> None:
    """The four measurements of the finished run (the module's docstring), each skipped where
    its file exists."""
    os.chdir(ROOT)
    out = os.path.relpath(out)  # as records name their files: no local path
    weights = os.path.join(out, "model.pt")
    if not os.path.isfile(weights):
        raise SystemExit(f"no {weights}: the run has not finished")
    unpack_images(DATA_DIR, os.path.join(shared, "data", "cifar10-official", "unpack.py"))
    # The headline first (seconds), then the mirror's test images (minutes), then under shift
    # (most of the time): a stretch of work cut short keeps what finished.
    compare(out, weights)
    unpack_images(MIRROR_DIR, os.path.join(shared, "data", "unpack.py"))
    mirror_test = os.path.join(out, "mirror-test")
    if not os.path.isfile(os.path.join(mirror_test, "metrics.json")):
        cli(mirror_test, ["--data_source", "folder", "--data_dir", MIRROR_DIR, "--model_weights",
                          weights, "--device", "cpu", "--progress", "lines"], "outputs")
    under_shift = os.path.join(out, "under-shift")
    if not os.path.isfile(os.path.join(under_shift, "comparison.json")):
        subprocess.run([sys.executable, os.path.join("scripts", "under_shift_cpu.py"),
                        "--data_dir", DATA_DIR, "--networks", "reference-seed0",
                        "reference-official-cpu-seed0", "--out", under_shift], check=True,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})


def compare(out: str, weights: str) -> None:
    """Measurements 1 and 2 into OUT/comparison.json: this run's released weights beside the
    report's accuracy, and paired with the mirror-trained reference on the same images."""
    # Both networks on the same official test images 0-999, in fp32 with the views they record.
    data = load_data(make_config(data_source="folder", data_dir=DATA_DIR, model_weights=weights))
    images, labels = to_nchw(data.test.images), data.test.labels
    predicted = {}
    for name, path in (("official", weights), ("mirror", REFERENCE)):
        network, tta = read_weights(path)
        predicted[name] = predictions(network, images, tta or NO_TTA)
    official = accuracy_entry(predicted["official"], labels)
    low, high = official["test_accuracy_ci95"]
    changes = paired_changes(predicted["mirror"], predicted["official"], labels)
    with open(os.path.join(out, "metrics.json")) as file:
        recorded = json.load(file)["test_accuracy"]
    comparison = {
        "what": "the reference network trained on the official images (this run) and on the "
                "JPEG mirror's (REFERENCE), tested on the same official test images 0-999",
        "commit": git_commit(), "environment": environment(torch.device("cpu")),
        "test_data": data.origins["test"].name, "fingerprints": data.origins["test"].fingerprints,
        "official_trained": {**official, "weights": weights, "recorded_test_accuracy": recorded},
        "mirror_trained": {**accuracy_entry(predicted["mirror"], labels), "weights": REFERENCE},
        "report_test_accuracy": REFERENCE_TEST_ACCURACY,
        # 93.41 % was measured on all 10,000 official test images, these are 1,000 of them.
        "report_inside_interval": bool(low <= REFERENCE_TEST_ACCURACY <= high),
        "official_vs_mirror": {**changes, "mcnemar_exact_p": mcnemar_exact_p(
            changes["now_wrong"], changes["now_right"])}}
    comparison["training_cost_of_the_mirror_points"] = (
        official["test_accuracy"] - comparison["mirror_trained"]["test_accuracy"])
    atomic_write_json(os.path.join(out, "comparison.json"), comparison)
    print(f"on {comparison['test_data']}: trained on the official images {official['text']} "
          f"(the report: {REFERENCE_TEST_ACCURACY} %, "
          f"{'inside' if comparison['report_inside_interval'] else 'outside'} the interval); "
          f"on the mirror {comparison['mirror_trained']['text']}; "
          f"{changes['now_right']} answers became right, {changes['now_wrong']} wrong "
          f"(McNemar's exact p = {comparison['official_vs_mirror']['mcnemar_exact_p']:.2g})",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", choices=("train", "keep", "measure"),
                        default="train")
    parser.add_argument("--work", default=os.path.join(os.path.dirname(ROOT), "runs",
                                                       "reference-official-cpu-seed0"))
    parser.add_argument("--out", default=os.path.join(ROOT, "results",
                                                      "reference-official-cpu-seed0"))
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared"))
    args = parser.parse_args()
    work, out = os.path.abspath(args.work), os.path.abspath(args.out)
    if args.action == "keep":
        keep(work, out)
    elif args.action == "measure":
        measure(out, os.path.abspath(args.shared))
    else:
        train(work, out, os.path.abspath(args.shared))


if __name__ == "__main__":
    main()
