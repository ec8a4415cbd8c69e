"""Smaller networks measured side by side: parameters, bytes on disk, accuracy with n and
interval, answers that change between two networks on the same images, and CPU images/s.

The measurements are made by scripts/distillation_cpu.py (a student alone against the same
student distilled) and scripts/quantize_cpu.py (float against int8), each in one run; the
size/accuracy table of results/README.md is made from what they committed under results/.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from ..evaluation import format_accuracy, predict_logits, wilson_interval
from ..files import run_record
from ..recipes import NO_TTA, TestTimeAugmentation
from ..report import RESULTS_DIR

ROOT = os.path.dirname(RESULTS_DIR)  # where the results' paths start


def accuracy_entry(predicted: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy (percent) of predictions, with n and its 95 % Wilson interval."""
    correct = int((predicted == labels).sum())
    accuracy = 100 * correct / len(labels)
    return {"test_accuracy": accuracy, "test_images": len(labels),
            "test_accuracy_ci95": list(wilson_interval(correct, len(labels))),
            "text": format_accuracy(accuracy, len(labels))}


def paired_changes(first: np.ndarray, second: np.ndarray, labels: np.ndarray) -> dict:
    """How two networks' answers on the same images differ: images whose answer changed, those
    the second gets right and the first wrong, and the reverse (McNemar's b and c)."""
    first_right, second_right = first == labels, second == labels
    return {"images": len(labels), "answer_changed": int((first != second).sum()),
            "now_right": int((~first_right & second_right).sum()),
            "now_wrong": int((first_right & ~second_right).sum())}


def predictions(network: nn.Module, images: torch.Tensor,
                tta: TestTimeAugmentation = NO_TTA, batch_size: int = 256) -> np.ndarray:
    """Predicted labels for uint8 images (N, 3, 32, 32), on the network's device, averaged
    over the test-time views `tta`."""
    return predict_logits(network, images, batch_size, tta).argmax(1).cpu().numpy()


def cpu_images_per_second(networks: Dict[str, nn.Module], images: torch.Tensor,
                          batch_size: int = 256, rounds: int = 3) -> Dict[str, dict]:
    """Images per second of each network's forward pass on the CPU (uint8 to logits, as
    `predict_logits` does, without test-time augmentation), measured in turns: each round
    times every network once over `images`, so that a slower or busier moment of the machine
    falls on all of them. The median of the rounds, and every round."""
    seconds: Dict[str, List[float]] = {name: [] for name in networks}
    for network in networks.values():  # warm-up: allocations, int8 weight packing
        predict_logits(network.cpu(), images[:batch_size], batch_size)
    for _ in range(rounds):
        for name, network in networks.items():
            started = time.perf_counter()
            predict_logits(network, images, batch_size)
            seconds[name].append(time.perf_counter() - started)
    return {name: {"images_per_second": len(images) / float(np.median(times)),
                   "rounds_images_per_second": [len(images) / t for t in times],
                   "images": len(images), "batch_size": batch_size,
                   "threads": torch.get_num_threads()}
            for name, times in seconds.items()}


# --- the size/accuracy table, from the committed measurements -----------------------------------

INT8_RUN, DISTILLATION_RUN = "int8-cpu", "distillation-cpu"


def read_comparison(results_dir: str, folder: str) -> Optional[dict]:
    """results_dir/folder/comparison.json (a measurement script's record), or None where that
    measurement is not committed."""
    path = os.path.join(results_dir, folder, "comparison.json")
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return json.load(file)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.2f}"


def _trained(trained: Optional[dict], weights: str) -> str:
    """How a committed network was trained, in a few words, from its run's metrics.json."""
    if trained is None:
        return "training not recorded"
    where = trained["device"].replace("cuda: ", "")
    overrides = ((run_record(os.path.join(ROOT, weights)) or {}).get("config") or {}).get("recipe_overrides")
    recipe = f"{trained['recipe']} recipe" + (f" with `recipe_overrides={overrides}`" if overrides else "")
    text = f"{recipe}, {trained['epochs']} epochs on {trained['train_data']}, {where}"
    return text + (f", distilled from {', '.join(trained['distilled_from'])}" if trained.get("distilled_from") else "")


def _int8_row(network: dict, run: dict) -> dict:
    changes = network["int8_vs_float"]
    return {"network": "its int8 version", "params": network["params"],
            "bytes": network["int8"]["file_bytes"], "accuracy": network["int8"]["text"],
            "speed": network["int8"]["cpu"]["images_per_second"], "run": INT8_RUN,
            "how": (f"int8 of the row above; {changes['answer_changed']} of {changes['images']:,} "
                    f"answers changed ({_changes(changes)})")}


def _changes(changes: dict) -> str:
    """"6 now right, 1 now wrong" (the other changed answers went from one wrong class to another)."""
    return f"{changes['now_right']} now right, {changes['now_wrong']} now wrong"


def size_rows(results_dir: str) -> List[dict]:
    """The rows of the size/accuracy table: each committed network the int8 run measured, float
    then int8; then the students of the distillation run, alone and distilled (followed by the
    int8 version of a student that the int8 run quantized too)."""
    int8_run, distillation = read_comparison(results_dir, INT8_RUN), read_comparison(results_dir, DISTILLATION_RUN)
    networks = (int8_run or {}).get("networks", [])
    students = {} if distillation is None else {
        f"results/{DISTILLATION_RUN}/{arm}/model.pt": arm for arm in distillation["arms"]}
    rows = []
    for network in networks:
        if network["weights"] in students:
            continue
        rows.append({"network": f"`{network['weights']}`", "params": network["params"],
                     "bytes": network["float"]["file_bytes"], "accuracy": network["float"]["text"],
                     "speed": network["float"]["cpu"]["images_per_second"], "run": INT8_RUN,
                     "how": f"{_trained(network['trained'], network['weights'])}; test-time augmentation: "
                            f"{network['test_time_augmentation']}"})
        rows.append(_int8_row(network, int8_run))
    if distillation is None:
        return rows
    scale, settings = distillation["scale"], distillation["distillation"]
    for path, arm in students.items():
        entry = distillation["arms"][arm]
        if arm == "alone":
            how = (f"{scale['recipe']} recipe, {scale['epochs']} epochs on "
                   f"{distillation['train_data']}, batch {scale['batch_size']}, "
                   f"{distillation['environment']['cpu_cores']}-core CPU")
        else:
            changes = distillation["distilled_vs_alone"]
            how = (f"the same, distilled from `{distillation['teacher']['path']}` (weight "
                   f"{settings['distill_weight']:g}, temperature {settings['distill_temperature']:g}); "
                   f"against the student alone, {changes['answer_changed']} of "
                   f"{changes['images']:,} answers changed ({_changes(changes)})")
        rows.append({"network": f"`{path}`: student, width_multiplier="
                                f"{distillation['student']['width_multiplier']:g}, {arm}",
                     "params": distillation["student"]["params"], "bytes": entry["model_bytes"],
                     "accuracy": entry["text"],
                     "speed": distillation["student"]["cpu"]["images_per_second"],
                     "run": DISTILLATION_RUN, "how": how})
        rows += [_int8_row(network, int8_run) for network in networks if network["weights"] == path]
    return rows


def size_table(results_dir: str = RESULTS_DIR, link: str = "results/") -> str:
    """The size/accuracy table as markdown; `link` is the path from the page to results/."""
    rows = size_rows(results_dir)
    if not rows:
        return ("Not yet measured: scripts/quantize_cpu.py and scripts/distillation_cpu.py write "
                "the runs this table is made from.")
    test_data = {(read_comparison(results_dir, run) or {}).get("test_data") for run in (INT8_RUN, DISTILLATION_RUN)}
    calibration = ((read_comparison(results_dir, INT8_RUN) or {}).get("calibration") or {}).get("data")
    made_by = f"made by (int8: calibrated on {calibration})" if calibration else "made by"
    lines = [f"| network | parameters | MB on disk (float16 or int8 file) | "
             f"{' / '.join(sorted(filter(None, test_data)))} "
             f"| CPU images/s | {made_by} | run |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['network']} | {row['params']:,} | {_megabytes(row['bytes'])} | "
                     f"{row['accuracy']} | {row['speed']:,.0f} | {row['how']} | "
                     f"[{row['run']}]({link}{row['run']}) |")
    return "\n".join(lines)
