"""What a change to helpers/ must not change: tiny fixed-seed training runs, fingerprinted.

    python scripts/redesign_check.py record results/redesign/before.json   # before the change
    python scripts/redesign_check.py compare results/redesign/before.json  # after it

Each run trains a quarter-width network with one block per stage for 2 epochs on synthetic
images (CPU, seed 0) through the command line, in a fresh process: in fp32 (amp='off',
contiguous), and once in bf16 with channels_last (amp='bf16', the rule on a CPU that computes
bf16). It records a SHA-256 of
every tensor and plain value in its checkpoint.pt, best.pt and model.pt, and its metrics.json,
leaving out only what a clock or the checkout decides (seconds, commit). `compare` runs them
again and lists every difference: the same code gives none. `record` also keeps run 1's
checkpoint.pt and best.pt after epoch 1 (under 1 MB) beside the record, and `compare` resumes
from them, so that a checkpoint written before the change is shown to continue exactly as it did.
Two evaluations of one run's model.pt are fingerprinted too: quantized to int8, and under shift
(corruptions=True).

fp32 and bf16 kernels differ between CPUs (AVX2 against AVX-512): record and compare on the same
kind of machine, on the same day.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

import torch

PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--data_source", "synthetic", "--train_subset", "200", "--val_size", "50",
          "--test_subset", "100", "--batch_size", "32", "--width_multiplier", "0.25",
          "--blocks", "1 1 1", "--device", "cpu", "--progress", "none", "--seed", "0",
          "--epochs", "2"]
RUNS = {
    "reference-fast": ["--recipe", "reference", "--amp", "off"],
    "improved-fast": ["--recipe", "improved", "--amp", "off"],
    "improved-dataloader-mixup": ["--recipe", "improved", "--pipeline", "dataloader",
                                  "--num_workers", "0", "--amp", "off",
                                  "--recipe_overrides", "{'mixup_alpha': 0.2, 'cutmix_alpha': 1.0}"],
    "reference-bf16-channels-last": ["--recipe", "reference", "--amp", "bf16"],
}
RESUMED = "reference-fast"   # the run whose epoch-1 checkpoint is kept and resumed
# The options of COMMON that an evaluation takes (the others shape training only).
EVALUATION_OPTIONS = ["--data_source", "synthetic", "--test_subset", "100", "--device", "cpu",
                      "--progress", "none", "--amp", "off"]
# Evaluations of one run's model.pt (its recorded test-time augmentation: flip): quantized to
# int8 on the way, and under shift; the weights' folder is replaced by that run's folder.
EVALUATED = "improved-fast/model.pt"
EVALUATIONS = {"evaluation-int8": ["--quantize", "int8", "--calibration_images", "100"],
               "evaluation-corruptions": ["--corruptions", "True"]}
# What a clock or the checkout decides, not the code's computation.
VOLATILE = {"seconds", "wall_time_s", "warmup_s", "commit", "commit_note", "images_per_second"}
# Settings of one invocation that change where files go, not what is computed (the resumed run
# differs from the uninterrupted one in these only).
PER_INVOCATION = ("output_dir", "figures_dir", "resume")


def digest(value: Any) -> Any:
    """A JSON-friendly fingerprint of a loaded file: tensors by SHA-256 of dtype, shape and
    bytes; containers entry by entry; volatile entries left out."""
    if isinstance(value, torch.Tensor) and value.is_quantized:  # an int8 weight: values, scales
        scales = (value.q_per_channel_scales() if value.qscheme() in PER_CHANNEL
                  else torch.tensor([value.q_scale()]))
        return [digest(value.int_repr()), digest(scales)]
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        raw = tensor.view(torch.uint8) if tensor.dtype != torch.bool else tensor.to(torch.uint8)
        return f"{tensor.dtype} {list(value.shape)} " + hashlib.sha256(
            raw.numpy().tobytes()).hexdigest()[:16]
    if isinstance(value, dict):
        return {str(k): digest(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, (list, tuple)):
        return [digest(v) for v in value]
    if isinstance(value, str) and len(value) > 200:  # a random generator's state, say
        return "text " + hashlib.sha256(value.encode()).hexdigest()[:16]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)  # a dtype or a quantization scheme in an int8 state_dict


def train(folder: str, arguments: List[str], options: List[str] = COMMON) -> None:
    command = [sys.executable, "-m", "helpers.cli", *options, *arguments, "--output_dir", folder,
               "--figures_dir", os.path.join(folder, "figures")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def fingerprint(folder: str) -> Dict[str, Any]:
    files = {}
    for name in ("checkpoint.pt", "best.pt", "model.pt", "model-int8.pt"):
        if not os.path.exists(os.path.join(folder, name)):
            continue
        content = torch.load(os.path.join(folder, name), map_location="cpu", weights_only=True)
        if isinstance(content, dict) and "config" in content:  # paths of this temporary folder
            content = {**content, "config": {k: v for k, v in content["config"].items()
                                             if k not in PER_INVOCATION}}
        if isinstance(content, dict) and "rng" in content:
            # numpy's and Python's global generators start from the operating system's entropy
            # in every process and nothing here draws from them: only torch's are the run's.
            content["rng"] = {k: v for k, v in content["rng"].items() if k in ("torch", "cuda")}
        files[name] = digest(content)
    with open(os.path.join(folder, "metrics.json")) as file:
        metrics = json.load(file)
    metrics["config"] = {k: v for k, v in metrics["config"].items()
                         if k not in PER_INVOCATION + ("model_weights",)}
    metrics.pop("evaluated_weights", None)  # the path of the temporary folder
    files["metrics.json"] = digest(metrics)
    return files


def differences(before: Any, after: Any, where: str = "") -> List[str]:
    """Every value of `before` that `after` lacks or changes (keys only `after` has are new
    records, listed apart)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [line for key in before for line in
                (differences(before[key], after[key], f"{where}/{key}") if key in after
                 else [f"{where}/{key}: missing now"])]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [line for i, (b, a) in enumerate(zip(before, after))
                for line in differences(b, a, f"{where}[{i}]")]
    return [] if before == after else [f"{where}: {repr(before)[:100]} -> {repr(after)[:100]}"]


def added(before: Any, after: Any, where: str = "") -> List[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return [f"{where}/{key}" for key in after if key not in before] + [
            line for key in before if key in after for line in added(before[key], after[key], f"{where}/{key}")]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [line for i, (b, a) in enumerate(zip(before, after)) for line in added(b, a, f"{where}[{i}]")]
    return []


def run_all(work: str, kept_checkpoint: str = "") -> Dict[str, Any]:
    record = {}
    for name, arguments in RUNS.items():
        folder = os.path.join(work, name)
        train(folder, arguments)
        record[name] = fingerprint(folder)
        print(f"{name}: trained and fingerprinted", flush=True)
    for name, arguments in EVALUATIONS.items():
        weights = ["--model_weights", os.path.join(work, EVALUATED)]
        train(os.path.join(work, name), [*weights, *arguments], EVALUATION_OPTIONS)
        record[name] = fingerprint(os.path.join(work, name))
        print(f"{name}: evaluated and fingerprinted", flush=True)
    if kept_checkpoint:  # resume the checkpoint written before, up to epoch 2 (COMMON's epochs)
        folder = os.path.join(work, "resumed")
        os.makedirs(folder)
        for name in ("checkpoint.pt", "best.pt"):
            shutil.copy(kept_checkpoint + name, os.path.join(folder, name))
        train(folder, [*RUNS[RESUMED], "--resume", "True"])
        record["resumed"] = fingerprint(folder)
        print(f"resumed {kept_checkpoint} to epoch 2", flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("record", help="the JSON file of the record")
    arguments = parser.parse_args()
    # The run's folder after epoch 1: "...-epoch1-checkpoint.pt" and "...-epoch1-best.pt".
    kept = os.path.join(os.path.dirname(os.path.abspath(arguments.record)), f"{RESUMED}-epoch1-")
    with tempfile.TemporaryDirectory() as work:
        if arguments.mode == "record":
            first = os.path.join(work, "epoch1")
            train(first, [*RUNS[RESUMED], "--epochs", "1"])
            for name in ("checkpoint.pt", "best.pt"):
                shutil.copy(os.path.join(first, name), kept + name)
            record = run_all(work)
            os.makedirs(os.path.dirname(os.path.abspath(arguments.record)), exist_ok=True)
            with open(arguments.record, "w") as file:
                json.dump({"command": " ".join(["python -m helpers.cli", *COMMON]), "runs": record},
                          file, indent=1)
            print(f"recorded {len(record)} runs in {arguments.record}; kept {kept}")
            return
        with open(arguments.record) as file:
            before = json.load(file)["runs"]
        after = run_all(work, kept)
    found = [line for name in before for line in differences(before[name], after[name], name)]
    new = [line for name in before for line in added(before[name], after[name], name)]
    # The resumed run must end as the uninterrupted one did (its checkpoint's history differs
    # only in the seconds, which are left out).
    # Its best.pt is epoch 1's, written by the first part, run with epochs=1.
    for record in (before[RESUMED], after["resumed"]):
        record["best.pt"].get("config", {}).pop("epochs", None)
    found += [f"resumed: {line}" for line in differences(before[RESUMED], after["resumed"])]
    print(f"new records (not in the record): {', '.join(sorted(set(new))) or 'none'}")
    print("\n".join(found) if found else "no differences: every fingerprinted value is as recorded")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
