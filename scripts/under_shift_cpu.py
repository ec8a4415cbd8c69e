"""Accuracy under shift of every committed network, side by side on the same corrupted images.

    python scripts/under_shift_cpu.py --data_dir data/cifar10-official      # about 40 minutes

The test images of the image folders (official test images 0-999 for the official pixels) are
corrupted once, every kind of helpers/options/corruptions.py at severities 1 to 5 with the seed
every run uses (its CORRUPTION_SEED); then each network predicts them as an evaluation with
`corruptions=True` does (helpers/inference.py's Predictor, with the test-time augmentation its
weights record; fp32, or int8 kernels, on the CPU). The int8 versions of the two full networks
are made as scripts/quantize_cpu.py makes them (calibration on 1,000 official training images).

Writes OUT/comparison.json and OUT/log.txt: for every network its clean accuracy, its accuracy
per kind and severity, the seconds it took, and paired comparisons on the same images (answers
that became right and wrong) for what int8, a smaller network and the improved recipe cost.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from helpers.options import corruptions  # noqa: E402
from helpers.options.corruptions import CORRUPTION_SEED  # noqa: E402
from helpers.augment import to_nchw  # noqa: E402
from helpers.data import load_data  # noqa: E402
from helpers.files import atomic_write_json, read_weights  # noqa: E402
from helpers.inference import Predictor, predict  # noqa: E402
from helpers.model import count_parameters  # noqa: E402
from helpers.options.calibration import calibration_set  # noqa: E402
from helpers.options.quantization import quantize  # noqa: E402
from helpers.recipes import NO_TTA  # noqa: E402
from helpers.report import git_commit  # noqa: E402
from helpers.settings import make_config  # noqa: E402
from helpers.options.sizes import accuracy_entry, paired_changes  # noqa: E402
from benchmarks.common import environment, start_log  # noqa: E402

# name -> (weights file, quantized here?)
NETWORKS = {
    "reference-seed0": ("results/reference-seed0/model.pt", False),
    "reference-seed0 int8": ("results/reference-seed0/model.pt", True),
    "improved-nocutout-seed1": ("results/improved-nocutout-seed1/model.pt", False),
    "improved-nocutout-seed1 int8": ("results/improved-nocutout-seed1/model.pt", True),
    "quarter-width alone": ("results/distillation-cpu/alone/model.pt", False),
    "quarter-width distilled": ("results/distillation-cpu/distilled/model.pt", False),
    "quarter-width distilled int8": ("results/int8-cpu/distillation-cpu-distilled/model-int8.pt", False),
    # The reference network trained on the official images (scripts/reference_official_cpu.py).
    "reference-official-cpu-seed0": ("results/reference-official-cpu-seed0/model.pt", False),
}
# (what it costs, the network without it, the network with it)
PAIRS = [
    ("int8 weights", "reference-seed0", "reference-seed0 int8"),
    ("int8 weights", "improved-nocutout-seed1", "improved-nocutout-seed1 int8"),
    ("the improved recipe instead of the reference one", "reference-seed0", "improved-nocutout-seed1"),
    ("a quarter-width student distilled from it, instead of the full network",
     "improved-nocutout-seed1", "quarter-width distilled"),
    ("distilling the quarter-width student, instead of training it alone",
     "quarter-width alone", "quarter-width distilled"),
    ("int8 weights (quarter width)", "quarter-width distilled", "quarter-width distilled int8"),
    ("training on the official images instead of the JPEG mirror's", "reference-seed0",
     "reference-official-cpu-seed0"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="image folders of the official pixels")
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS),
                        default=[name for name, (path, _) in NETWORKS.items()
                                 if os.path.isfile(os.path.join(ROOT, path))])
    parser.add_argument("--out", default="results/under-shift")
    args = parser.parse_args()
    command = start_log(args.out)
    os.chdir(ROOT)
    config = make_config(data_source="folder", data_dir=args.data_dir, device="cpu",
                         model_weights=NETWORKS[args.networks[0]][0], quantize="int8",
                         output_dir=os.path.join("outputs", "under-shift"))
    data = load_data(config)  # the test images only, as an evaluation loads them
    labels = data.test.labels
    started = time.perf_counter()
    sets = list(corruptions.corrupted_sets(data.test.images, seed=CORRUPTION_SEED))
    making_s = time.perf_counter() - started
    fingerprint = corruptions.fingerprint(sets)
    print(f"{data.test_name}: {len(sets)} corrupted sets made in {making_s:.0f} s, fingerprint "
          f"{fingerprint[:12]}", flush=True)
    calibration = None
    entries: Dict[str, dict] = {}
    correct: Dict[str, Dict[str, np.ndarray]] = {}
    for name in args.networks:
        weights, int8 = NETWORKS[name]
        network, tta = read_weights(weights)
        tta = tta or NO_TTA
        if int8:
            if calibration is None:
                images, described = calibration_set(config, data)
                calibration = (to_nchw(images.images), described)
            network = quantize(network, calibration[0], calibration_data=calibration[1])
        model = Predictor([(network, tta)])
        started = time.perf_counter()
        clean = predict(model, data.test.images)
        predicted = {}
        for kind, severity, images in sets:  # minutes per full network: a line per kind
            predicted[kind, severity] = predict(model, images)
            if severity == corruptions.SEVERITIES[-1]:
                print(f"  {name}: {kind} done ({len(predicted)} of {len(sets)} sets, "
                      f"{time.perf_counter() - started:.0f} s)", flush=True)
        seconds = time.perf_counter() - started
        accuracy = {kind: [100 * float(np.mean(predicted[kind, s] == labels))
                           for s in corruptions.SEVERITIES] for kind in corruptions.KINDS}
        shifted = np.concatenate([predicted[kind, s] for kind, s, _ in sets])
        correct[name] = {"clean": clean, "shifted": shifted}
        entries[name] = {
            "weights": weights, "int8": int8 or "int8" in weights, "params": count_parameters(network),
            "test_time_augmentation": str(tta), "clean": accuracy_entry(clean, labels),
            "corruptions": {"severities": list(corruptions.SEVERITIES), "accuracy": accuracy,
                            "mean_accuracy": float(np.mean(shifted == np.tile(labels, len(sets)))) * 100,
                            "test_images": len(labels), "fingerprint": fingerprint},
            "seconds": seconds, "images_predicted": len(labels) * (len(sets) + 1)}
        print(f"{name}: clean {entries[name]['clean']['text']}; under shift "
              f"{entries[name]['corruptions']['mean_accuracy']:.2f} % mean over {len(sets)} sets; "
              f"{seconds:.0f} s on the CPU", flush=True)
    all_labels = np.tile(labels, len(sets))
    comparisons: List[dict] = []
    for what, without, with_it in PAIRS:
        if without not in correct or with_it not in correct:
            continue
        comparisons.append({
            "what": what, "without": without, "with": with_it,
            "clean": paired_changes(correct[without]["clean"], correct[with_it]["clean"], labels),
            "clean_points": entries[with_it]["clean"]["test_accuracy"] - entries[without]["clean"]["test_accuracy"],
            "shifted": paired_changes(correct[without]["shifted"], correct[with_it]["shifted"], all_labels),
            "shifted_points": entries[with_it]["corruptions"]["mean_accuracy"] - entries[without]["corruptions"]["mean_accuracy"]})
        c = comparisons[-1]
        print(f"{what}: clean {c['clean_points']:+.2f} points ({c['clean']['now_right']} now right, "
              f"{c['clean']['now_wrong']} now wrong); under shift {c['shifted_points']:+.2f} points "
              f"({c['shifted']['now_right']} now right, {c['shifted']['now_wrong']} now wrong of "
              f"{c['shifted']['images']:,})", flush=True)
    atomic_write_json(os.path.join(args.out, "comparison.json"), {
        "what": "committed networks on corrupted copies of the same test images, side by side",
        "command": command, "commit": git_commit(), "environment": environment(torch.device("cpu")),
        "test_data": data.origins["test"].name, "corruption_seed": CORRUPTION_SEED,
        "fingerprint": fingerprint, "making_s": making_s,
        "fidelity": {kind: corruptions.PARAMETERS[kind]["fidelity"] for kind in corruptions.KINDS},
        "calibration": calibration[1] if calibration else None,
        "networks": entries, "comparisons": comparisons})


if __name__ == "__main__":
    main()
