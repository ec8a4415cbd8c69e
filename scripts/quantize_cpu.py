"""Committed weights, float against int8 (post-training static quantization), side by side on
one CPU in one run:

    python3 scripts/quantize_cpu.py --data_dir /tmp/cifar10-official --out results/int8-cpu

For each weights file: quantized with `helpers.options.quantization.quantize`, its activation ranges
observed on `--calibration_images` official *training* images (stratified by class, the same
for every file); both networks tested on the same official test images with the test-time
augmentation the weights' run measured with, and the answers that changed counted; the
int8 network saved (OUT/NAME/model-int8.pt, loadable as `model_weights`) and both files' sizes
recorded. Then every float and int8 network's CPU images/s, measured in turns in one loop
(helpers.options.sizes.cpu_images_per_second). Writes OUT/comparison.json and OUT/log.txt.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from helpers.augment import to_nchw  # noqa: E402
from helpers.data import load_data  # noqa: E402
from helpers.files import atomic_write_json, read_weights, run_record, save_weights  # noqa: E402
from helpers.model import count_parameters  # noqa: E402
from helpers.options.calibration import calibration_set  # noqa: E402
from helpers.options.quantization import ROUTE, engine, quantize  # noqa: E402
from helpers.recipes import NO_TTA  # noqa: E402
from helpers.report import git_commit  # noqa: E402
from helpers.settings import make_config  # noqa: E402
from helpers.options.sizes import (accuracy_entry, cpu_images_per_second, paired_changes,  # noqa: E402
                           predictions)
from benchmarks.common import environment, start_log  # noqa: E402

WEIGHTS = ["results/reference-seed0/model.pt", "results/improved-nocutout-seed1/model.pt",
           "results/distillation-cpu/distilled/model.pt"]


def folder_name(weights: str) -> str:
    """results/reference-seed0/model.pt -> reference-seed0; a nested run joins its folders."""
    parts = os.path.normpath(os.path.dirname(weights)).split(os.sep)
    return "-".join(part for part in parts if part not in ("", "results"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="image folders of the official pixels")
    parser.add_argument("--weights", nargs="+", default=WEIGHTS)
    parser.add_argument("--calibration_images", type=int, default=1000)
    parser.add_argument("--out", default="results/int8-cpu")
    args = parser.parse_args()
    command = start_log(args.out)

    config = make_config(data_source="folder", data_dir=args.data_dir, device="cpu",
                         model_weights=args.weights[0], quantize="int8",
                         calibration_images=args.calibration_images,
                         output_dir=os.path.join("outputs", "int8-cpu"))
    data = load_data(config)  # the test images only, as an evaluation loads them
    images, labels = to_nchw(data.test.images), data.test.labels
    calibration_images, calibration_data = calibration_set(config, data)
    calibration = to_nchw(calibration_images.images)
    print(f"test images: {data.test_name}; calibration: {calibration_data}")

    entries, timed = [], {}
    for weights in args.weights:
        name = folder_name(weights)
        trained = run_record(weights)
        float_network, tta = read_weights(weights)
        tta = tta or NO_TTA  # as the weights' run measured them
        int8_network = quantize(float_network, calibration, calibration_data=calibration_data)
        int8_path = os.path.join(args.out, name, "model-int8.pt")
        int8_bytes = save_weights(int8_path, int8_network, tta)
        float_predicted = predictions(float_network, images, tta)
        int8_predicted = predictions(int8_network, images, tta)
        entry = {"weights": weights, "name": name, "params": count_parameters(float_network),
                 "test_time_augmentation": str(tta),
                 "trained": None if trained is None else {
                     "recipe": trained["recipe"], "epochs": trained["epochs_completed"],
                     "train_data": trained["data"]["train"]["name"],
                     "train_images": trained["train_images"], "device": trained["device"],
                     "seed": trained["seed"], "distilled_from": trained["config"].get("teacher_weights")},
                 "float": {"file": weights, "file_bytes": os.path.getsize(weights),
                           **accuracy_entry(float_predicted, labels)},
                 "int8": {"file": int8_path, "file_bytes": int8_bytes,
                          **accuracy_entry(int8_predicted, labels)},
                 "int8_vs_float": paired_changes(float_predicted, int8_predicted, labels)}
        entries.append(entry)
        timed[f"{name} float"], timed[f"{name} int8"] = float_network, int8_network
        print(f"{weights}: float {entry['float']['text']}, int8 {entry['int8']['text']}; "
              f"{entry['int8_vs_float']['answer_changed']} answers changed; "
              f"{entry['float']['file_bytes']:,} -> {int8_bytes:,} bytes")

    speed = cpu_images_per_second(timed, images)
    for entry in entries:
        for kind in ("float", "int8"):
            entry[kind]["cpu"] = speed[f"{entry['name']} {kind}"]
        print(f"{entry['name']}: CPU images/s float {entry['float']['cpu']['images_per_second']:.0f}, "
              f"int8 {entry['int8']['cpu']['images_per_second']:.0f}")
    atomic_write_json(os.path.join(args.out, "comparison.json"), {
        "what": "float and int8 (post-training static) versions of committed weights, side by side",
        "command": command, "commit": git_commit(), "environment": environment(torch.device("cpu")),
        "route": ROUTE, "engine": engine(), "test_data": data.origins["test"].name,
        "calibration": {"images": len(calibration), "data": calibration_data},
        "networks": entries})


if __name__ == "__main__":
    main()
