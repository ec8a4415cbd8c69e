"""The generated tables of README.md, results/README.md and docs/, from the committed runs under
results/ and the parameters' declarations.

    python scripts/results_tables.py           rewrite the generated blocks
    python scripts/results_tables.py --check   exit 1 if a block is not what the files say

Each generated block sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`;
everything outside the markers is written by hand. Runs are the folders of results/ with a
metrics.json (helpers/report.py); runs that differ only in their seed form one row. Every
accuracy names its data (as the run identified it) and comes with n and its 95 % interval.

The last column estimates the accuracy on all 10,000 official test images: a JPEG-mirror
accuracy plus the mirror's cost measured by airbench (calibration/airbench.json, nearest trainer),
or an accuracy on official test images 0–999 minus their sample offset, measured by airbench94
on the same images (calibration/airbench-official.json).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helpers.evaluation import format_accuracy  # noqa: E402
from helpers.files import run_record  # noqa: E402
from helpers.report import (accuracy_summary, grouped, hardware, is_full_length,  # noqa: E402
                            load_runs, recipe_label)
from helpers.settings import PARAMETERS  # noqa: E402
from helpers.options.sizes import read_comparison, size_table  # noqa: E402

THRESHOLDS = (93.41, 94.0, 95.0)  # the report's accuracy, and the issues' time-to-accuracy marks
EPOCH_LINE = re.compile(r"epoch\s+(\d+)/(\d+)\s.*val loss \S+ acc\s*([\d.]+)%")
OFFICIAL_SAMPLE = "official test images 0–999"
# The full reference network trained on the official images (scripts/reference_official_cpu.py).
OFFICIAL_RUN = "reference-official-cpu-seed0"


def read_calibration(results_dir: str, name: str) -> dict:
    """A calibration file of scripts/calibrate_mirror.py, or {} where it has not been measured."""
    path = os.path.join(results_dir, "calibration", name)
    if not os.path.isfile(path):
        return {}
    with open(path) as file:
        return json.load(file)


def load_calibration(results_dir: str) -> Optional[dict]:
    """trainer -> (mirror mean, delta) from calibration/airbench.json, if it has been measured."""
    trainers = read_calibration(results_dir, "airbench.json").get("trainers", {})
    measured = {name: (t["mirror_mean"], t["delta"]) for name, t in trainers.items()
                if t.get("mirror_mean") is not None}
    return measured or None


def load_sample_offset(results_dir: str) -> Optional[float]:
    """How much easier official test images 0–999 are than all 10,000: airbench94's mean on
    them minus its published accuracy on all 10,000, if measured."""
    airbench94 = read_calibration(results_dir, "airbench-official.json").get("airbench94", {})
    accuracies = airbench94.get("official_0_999_accuracies") or []
    return statistics.mean(accuracies) - airbench94["published_all_10000"] if accuracies else None


def official_equivalent(accuracy: float, run: dict, calibration: Optional[dict],
                        offset: Optional[float] = None) -> str:
    """The estimate for all 10,000 official test images, naming what it rests on."""
    tested = run["data"]["test"]["name"]
    if tested == f"CIFAR-10 {OFFICIAL_SAMPLE}":
        if offset is None:
            return "not yet measured (needs the 0–999 offset)"
        return f"{accuracy - offset:.2f} % (estimated: 0–999 offset {offset:+.2f})"
    if tested == "CIFAR-10 official test images":
        return "(measured on all 10,000)"
    if "JPEG mirror" not in tested:
        return "n/a"
    if calibration is None:
        return "not yet measured"
    trainer = min(calibration, key=lambda name: abs(calibration[name][0] - accuracy))
    return f"{accuracy + calibration[trainer][1]:.2f} % (estimated, {trainer} delta)"


def data_cell(run: dict) -> str:
    """The images a run read, once: "CIFAR-10 (JPEG mirror): training images; test images 0–999".
    n stands beside the accuracy."""
    test = run["data"]["test"]["name"]
    train = run["data"].get("train", {}).get("name")
    if train is None:
        return test
    family, _, test_part = test.partition(" test images")
    if train.startswith(family + " training images"):
        return f"{family}: {train[len(family) + 1:]}; test images{test_part}"
    return f"{train}; {test}"


def duration(seconds: float) -> str:
    """Training time as people read it: "156 s" on a GPU, "7.4 h" on a CPU."""
    return f"{seconds:.0f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def mean_accuracy(group: List[dict]) -> float:
    return statistics.mean(r["test_accuracy"] for r in group)


def time_to(run: dict, threshold: float) -> str:
    """Epoch and training seconds at which the test accuracy first reached `threshold`."""
    tested = [h for h in run["history"] if h.get("test_accuracy") is not None]
    if not tested:
        return "not recorded"
    elapsed = 0.0
    for entry in run["history"]:
        elapsed += entry["seconds"]
        if entry.get("test_accuracy") is not None and entry["test_accuracy"] >= threshold:
            return f"epoch {entry['epoch']}, {elapsed:.0f} s"
    return f"not reached (best {max(h['test_accuracy'] for h in tested):.2f} %)"


def times_to(run: dict) -> str:
    """time_to for each threshold, separated by slashes; once when all agree."""
    values = [time_to(run, t) for t in THRESHOLDS]
    return values[0] if len(set(values)) == 1 else " / ".join(values)


def per_run(group: List[dict], cell: Callable[[dict], str]) -> str:
    """One value per run, separated by slashes; once when all runs agree."""
    values = [cell(run) for run in group]
    return values[0] if len(set(values)) == 1 else " / ".join(values)


def accuracy_cell(group: List[dict]) -> str:
    cell = accuracy_summary(group, bold=len(group) > 1)
    best_val = [r["best_val_accuracy"] for r in group if r["best_val_accuracy"] is not None]
    if best_val:
        cell += f" (best val {', '.join(f'{v:.2f}' for v in best_val)} %)"
    return cell


def runs_table(runs: List[dict], link: str = "") -> str:
    """Every committed run, as recorded (the README's summary adds the official estimate);
    `link` is the path from the page to results/."""
    lines = ["| recipe | runs | data | test accuracy | training time | seeds | hardware | commit | "
             "first ≥ " + " / ".join(f"{t:g}" for t in THRESHOLDS) + " % |", "|---" * 9 + "|"]
    for group in grouped(runs):
        first = group[0]
        folders = ", ".join(f"[{r['folder']}]({link}{r['folder']})" for r in group)
        lines.append("| " + " | ".join([
            recipe_label(first) + (f", `val_size={first['config']['val_size']}`"),
            folders, data_cell(first), accuracy_cell(group),
            ", ".join(duration(r["wall_time_s"]) for r in group),
            ", ".join(str(r["seed"]) for r in group), hardware(first), first["commit"][:7],
            per_run(group, times_to)]) + " |")
    return "\n".join(lines)


def summary_table(runs: List[dict], calibration: Optional[dict], offset: Optional[float] = None) -> str:
    """The README's short table: full-length runs on all 50,000 training images, those
    trained on the official images first."""
    lines = ["| recipe | data | test accuracy | official, all 10,000 (estimated) | training time "
             "| hardware |", "|---|---|---|---|---|---|"]
    for group in grouped(runs):
        first = group[0]
        if not is_full_length(first):
            continue
        lines.append(f"| {recipe_label(first)} | {data_cell(first)} | "
                     f"{accuracy_summary(group, bold=True)} | "
                     f"{official_equivalent(mean_accuracy(group), first, calibration, offset)} | "
                     f"{duration(statistics.mean(r['wall_time_s'] for r in group))} | {hardware(first)} |")
    return "\n".join(lines)


def headline(runs: List[dict], results_dir: str) -> str:
    """The README's opening result: the report's recipe on the report's data (official test
    images 0–999) set against the report, then the same recipe on the JPEG mirror."""
    sentences = []
    record = read_comparison(results_dir, OFFICIAL_RUN)
    if record is not None:
        official, report = record["official_trained"], record["report_test_accuracy"]
        low, high = official["test_accuracy_ci95"]
        if record["report_inside_interval"]:
            verdict = f"**consistent with the report's {report} %**, which lies inside that interval"
        else:
            side = "short of" if official["test_accuracy"] < report else "above"
            verdict = f"**{side} the report's {report} %**, which lies outside that interval"
        sentences.append(
            "Trained as the report trained (its recipe, all 50,000 official CIFAR-10 training "
            f"images, 75 epochs, seed 0), the network scores **{official['test_accuracy']:.2f} %** "
            f"on official test images 0–999 (95 % interval {low:.1f}–{high:.1f} %, n = "
            f"{official['test_images']:,}): {verdict} (the report tested all 10,000 official test "
            "images; only the first 1,000 are here).")
    mirror = [group for group in grouped(runs) if is_full_length(group[0])
              and group[0]["recipe"] == "reference" and not group[0]["config"].get("recipe_overrides")
              and "JPEG mirror" in group[0]["data"]["train"]["name"]]
    if mirror:
        sentences.append("Trained and tested on CIFAR-10 (JPEG mirror), a JPEG copy, the report's "
                         f"recipe scores {accuracy_summary(mirror[0])}.")
    if record is None:
        sentences.append("The full network trained on the official images, the report's data, "
                         "is not yet measured.")
    return " ".join(sentences) + (" See [where the reproduction stands]"
                                  "(#where-the-reproduction-stands).")


def evaluations_table(evaluations: List[dict], calibration: Optional[dict],
                      offset: Optional[float] = None, link: str = "") -> str:
    """Runs that evaluated committed weights (an ensemble: each member and the whole)."""
    lines = ["| weights | run | data | test accuracy | official, all 10,000 (estimated) | ECE | "
             "test-time augmentation | hardware | commit |", "|---|---|---|---|---|---|---|---|---|"]
    for run in evaluations:
        members = run.get("ensemble_members") or [{"path": p, "test_accuracy": run["test_accuracy"]}
                                                  for p in run["evaluated_weights"]]
        weights = "ensemble of " if len(members) > 1 else ""
        weights += ", ".join(f"`{m['path']}`" + (f" ({m['test_accuracy']:.2f} % alone, same TTA)"
                                                 if len(members) > 1 else "") for m in members)
        settings = run["recipe_settings"]
        tta = ", ".join(view for view, on in (("flip", settings["tta_flip"]),
                                              ("translate", settings.get("tta_translate"))) if on)
        lines.append(f"| {weights} | [{run['folder']}]({link}{run['folder']}) | {data_cell(run)} | "
                     f"{accuracy_summary([run], bold=True)} | "
                     f"{official_equivalent(run['test_accuracy'], run, calibration, offset)} | "
                     f"{run['ece']:.2f} % | {tta or 'none'} | {hardware(run)} | {run['commit'][:7]} |")
    return "\n".join(lines)


def mirror_cost_table(evaluations: List[dict]) -> str:
    """One weights file on both copies of official test images 0–999: the mirror's JPEGs and
    the official pixels, with the same test-time augmentation."""
    copies = {"CIFAR-10 (JPEG mirror) test images 0–999": "mirror", f"CIFAR-10 {OFFICIAL_SAMPLE}": "official"}
    pairs: Dict[tuple, Dict[str, dict]] = {}
    for run in evaluations:
        copy = copies.get(run["data"]["test"]["name"])
        if copy and len(run["evaluated_weights"]) == 1:
            key = (run["evaluated_weights"][0], run["recipe_settings"]["tta_flip"])
            pairs.setdefault(key, {})[copy] = run
    lines = ["| weights | trained on | test-time augmentation | the mirror's JPEGs of images "
             "0–999 | official pixels of images 0–999 | official − mirror |",
             "|---|---|---|---|---|---|"]
    for (weights, flip), runs in sorted(pairs.items()):
        if set(runs) != {"mirror", "official"}:
            continue
        mirror, official = runs["mirror"], runs["official"]
        trained = run_record(os.path.join(ROOT, weights))
        lines.append(f"| `{weights}` | {trained['data']['train']['name'] if trained else 'unknown'} | "
                     f"{'flip' if flip else 'none'} | {accuracy_summary([mirror])} | "
                     f"{accuracy_summary([official])} | "
                     f"{official['test_accuracy'] - mirror['test_accuracy']:+.2f} points |")
    return "\n".join(lines)


def parameters_table() -> str:
    """Every notebook parameter with its default (`name=default`, as messages write it), what it
    accepts, what it means, and where alone it acts (blank: every run)."""
    lines = ["| parameter=default | accepts | meaning | only has an effect in |", "|---|---|---|---|"]
    for name, declared in PARAMETERS.items():
        default = list(declared.default) if isinstance(declared.default, tuple) else declared.default
        cells = [f"`{name}={default!r}`", str(declared.kind), declared.meaning,
                 declared.when.__doc__ if declared.when else ""]
        lines.append(("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |").replace("|  |", "| |"))
    return "\n".join(lines)


def final_val(run: dict) -> float:
    return run["history"][-1]["val_accuracy"]


def partial_log(path: str) -> Optional[tuple]:
    """(last epoch, of epochs, its val accuracy) from a CLI log cut off before the end."""
    last = None
    with open(path) as file:
        for line in file:
            match = EPOCH_LINE.search(line)
            if match:
                last = (int(match[1]), int(match[2]), float(match[3]))
    return last


def ablation_table(results_dir: str) -> str:
    with open(os.path.join(results_dir, "ablation", "ablation.json")) as file:
        ablation = json.load(file)
    outcomes = {v["variant"]: v for v in ablation["variants"]}
    shipped = outcomes["shipped"]["final_val_accuracy"]
    lines = [f"| variant (one change to the shipped recipe) | `recipe_overrides` | val accuracy, "
             f"{ablation['epochs']} epochs | vs shipped | run |", "|---|---|---|---|---|"]
    for name, outcome in outcomes.items():
        if not outcome["complete"]:
            lines.append(f"| {name} | `{outcome['overrides']}` | incomplete | | |")
            continue
        delta = outcome["final_val_accuracy"] - shipped
        chosen = " (chosen by the rule)" if name == ablation["chosen"] else ""
        lines.append(f"| {name}{chosen} | `{outcome['overrides'] or '{}'}` | "
                     f"{outcome['final_val_accuracy']:.2f} % | {delta:+.2f} | "
                     f"[{outcome['folder']}](ablation/{outcome['folder']}) |")
    lines += ["", "Full length (the 75-epoch schedule), same seed and split:", "",
              "| variant | val accuracy | run |", "|---|---|---|"]
    shipped_75 = os.path.join(results_dir, "improved-val-seed0", "metrics.json")
    with open(shipped_75) as file:
        shipped_run = json.load(file)
    lines.append(f"| shipped | {final_val(shipped_run):.2f} % at epoch 75 (best {shipped_run['best_val_accuracy']:.2f} %) "
                 "| [improved-val-seed0](improved-val-seed0) |")
    for log in sorted(glob.glob(os.path.join(results_dir, "ablation", "*-75epochs-val", "log.txt"))):
        folder = os.path.basename(os.path.dirname(log))
        epoch, epochs, accuracy = partial_log(log)
        same_point = shipped_run["history"][epoch - 1]["val_accuracy"]
        stopped = "" if epoch == epochs else f" (run stopped by the time limit; shipped at epoch {epoch}: {same_point:.2f} %)"
        lines.append(f"| {folder.replace('-75epochs-val', '').replace('-', ' ')} | {accuracy:.2f} % at "
                     f"epoch {epoch} of {epochs}{stopped} | [{folder}](ablation/{folder}) |")
    return "\n".join(lines)


def under_shift_tables(results_dir: str, folder: str = "under-shift",
                       command: str = "python scripts/under_shift_cpu.py", by_kind: bool = False) -> str:
    """results/README.md's under-shift tables: each network of results_dir/folder clean and on
    corrupted copies of the same test images, then what int8, a smaller network, each recipe or
    the training images cost, paired; with `by_kind`, each comparison kind by kind after them."""
    run = read_comparison(results_dir, folder)
    if run is None:
        return f"Not yet measured: `{command}` writes the run it is made from."
    kinds = len(run["fidelity"])
    lines = [f"| network | parameters | clean: {run['test_data']} | under shift: mean over "
             f"{kinds} kinds × 5 severities | worst kind at severity 5 | CPU seconds |",
             "|---|---|---|---|---|---|"]
    for name, entry in run["networks"].items():
        shift = entry["corruptions"]
        worst = min(shift["accuracy"], key=lambda kind: shift["accuracy"][kind][-1])
        images = entry["images_predicted"]
        lines.append(f"| {name} (`{entry['weights']}`; test-time augmentation: "
                     f"{entry['test_time_augmentation']}) | {entry['params']:,} | "
                     f"{entry['clean']['text']} | {shift['mean_accuracy']:.2f} % (n = "
                     f"{images - shift['test_images']:,}) | {worst} "
                     f"{shift['accuracy'][worst][-1]:.1f} % | {entry['seconds']:,.0f} |")

    def paired(points: float, changes: dict) -> str:
        return (f"{points:+.2f} points ({changes['now_right']:,} now right, "
                f"{changes['now_wrong']:,} now wrong of {changes['images']:,})")

    lines += ["", "| what it costs | from → to | clean | under shift |", "|---|---|---|---|"]
    lines += [f"| {c['what']} | {c['without']} → {c['with']} | {paired(c['clean_points'], c['clean'])} "
              f"| {paired(c['shifted_points'], c['shifted'])} |" for c in run["comparisons"]]
    return "\n".join(lines + (under_shift_by_kind(run) if by_kind else []))


def under_shift_by_kind(run: dict) -> List[str]:
    """Each kind of corruption, for every paired comparison of an under-shift record: both
    networks' accuracy averaged over the 5 severities and at severity 5, and the difference."""
    lines = []
    for comparison in run["comparisons"]:
        without, with_it = (run["networks"][comparison[side]]["corruptions"]["accuracy"]
                            for side in ("without", "with"))
        lines += ["", f"{comparison['what']}, kind by kind (n = {run['networks'][comparison['with']]['corruptions']['test_images']:,} "
                      "images per kind and severity):", "",
                  f"| kind | {comparison['without']}: mean of severities 1–5 | {comparison['with']} "
                  "| difference | at severity 5 |", "|---|---|---|---|---|"]
        for kind in sorted(without, key=lambda k: statistics.mean(with_it[k]) - statistics.mean(without[k])):
            before, after = statistics.mean(without[kind]), statistics.mean(with_it[kind])
            lines.append(f"| {kind} | {before:.2f} % | {after:.2f} % | {after - before:+.2f} points "
                         f"| {without[kind][-1]:.1f} → {with_it[kind][-1]:.1f} % |")
    return lines


def mcnemar_exact_p(now_wrong: int, now_right: int) -> float:
    """Two-sided exact McNemar test (McNemar 1947; the binomial form): the chance of a split of
    the changed answers at least this uneven if either network were as likely to win each."""
    changed, fewer = now_wrong + now_right, min(now_wrong, now_right)
    tail = sum(math.comb(changed, k) for k in range(fewer + 1)) / 2 ** changed
    return min(1.0, 2 * tail)


def mirror_training_cost_table(results_dir: str) -> str:
    """The README's table of the mirror's cost at training time: the same quarter-width run
    trained on the official training images and on the mirror's, tested on the same images."""
    record = read_comparison(results_dir, "mirror-cost-cpu")
    if record is None:
        return "Not yet measured: `python scripts/mirror_cost_cpu.py` writes the runs it is made from."
    runs = record["runs"]
    lines = ["| trained on | tested on | test accuracy | training time | images/s | commit |",
             "|---|---|---|---|---|---|"]
    for run in runs.values():
        accuracy = format_accuracy(run["test_accuracy"], run["test_images"])
        if run["train_data"] is None:  # the mirror-trained weights evaluated on other images
            lines.append(f"| {runs['mirror']['train_data']} (the same weights) | {run['test_data']} "
                         f"| {accuracy} | - | - | {run['commit'][:7]} |")
            continue
        lines.append(f"| {run['train_data']} | {run['test_data']} | {accuracy} | "
                     f"{run['training_s'] / 60:.0f} min ({run['training_precision']}) | "
                     f"{run['images_per_second']:,.0f} | {run['commit'][:7]} |")
    changes = record["mirror_vs_official"]
    lines += ["", mirror_cost_sentence(changes, record["cost_points"], "quarter width")]
    return "\n".join(lines)


def mirror_cost_sentence(changes: dict, points: float, width: str) -> str:
    """What training on the mirror's images instead of the official pixels cost, paired:
    `changes` are paired_changes from the official-trained network to the mirror-trained one."""
    became_wrong, became_right = changes["now_wrong"], changes["now_right"]
    return (f"On the same {changes['images']:,} images, training on the mirror instead of the "
            f"official pixels costs **{points:.2f} points** at {width}: {became_wrong} answers "
            f"became wrong and {became_right} right, "
            f"{changes['answer_changed'] - became_wrong - became_right} went from one wrong class "
            f"to another ({changes['answer_changed']} changed; McNemar's exact test, two-sided: "
            f"p = {mcnemar_exact_p(became_wrong, became_right):.2g}).")


def official_training_table(results_dir: str) -> str:
    """The README's table of the full reference network trained on the official images: the
    released float16 weights on official test images 0–999 beside the report's accuracy and the
    mirror-trained reference, paired, and on the mirror's test images."""
    record = read_comparison(results_dir, OFFICIAL_RUN)
    if record is None:
        return ("Not yet measured: `python scripts/reference_official_cpu.py` trains it and "
                "writes the measurements.")
    lines = ["| weights | trained on | tested on | test accuracy |", "|---|---|---|---|"]
    for entry in (record["official_trained"], record["mirror_trained"]):
        trained = run_record(os.path.join(ROOT, entry["weights"]))
        lines.append(f"| `{entry['weights']}` | {trained['data']['train']['name']}, "
                     f"{duration(trained['wall_time_s'])} on {hardware(trained)} | "
                     f"{record['test_data']} | {entry['text']} |")
    official = record["official_trained"]
    mirror_test = os.path.join(results_dir, OFFICIAL_RUN, "mirror-test", "metrics.json")
    if os.path.isfile(mirror_test):
        with open(mirror_test) as file:
            evaluated = json.load(file)
        lines.append(f"| `{official['weights']}` (the same weights) | - | "
                     f"{evaluated['data']['test']['name']} | {accuracy_summary([evaluated])} |")
    low, high = official["test_accuracy_ci95"]
    verdict = "inside" if record["report_inside_interval"] else "outside"
    lines += ["", f"The report's {record['report_test_accuracy']} % (measured on all 10,000 official "
                  f"test images) lies **{verdict}** the 95 % interval of this run on images 0–999 "
                  f"({low:.1f}–{high:.1f} %)."]
    if abs(official["recorded_test_accuracy"] - official["test_accuracy"]) >= 0.005:
        lines[-1] += (f" The run recorded {official['recorded_test_accuracy']:.2f} % with its "
                      "float32 weights; the released float16 file scores the accuracy above.")
    changes = record["official_vs_mirror"]  # from the mirror-trained network to this one
    lines += ["", mirror_cost_sentence({**changes, "now_wrong": changes["now_right"],
                                        "now_right": changes["now_wrong"]},
                                       record["training_cost_of_the_mirror_points"], "full width")]
    return "\n".join(lines)


def bf16_parity_table(results_dir: str) -> str:
    """results/README.md's table of bf16 against fp32 training on a CPU, seed by seed."""
    record = read_comparison(results_dir, "bf16-parity-cpu")
    if record is None:
        return "Not yet measured: `python scripts/bf16_parity_cpu.py` writes it."
    lines = ["| training precision | test accuracy by seed | mean ± sample std | images/s | "
             "training time |", "|---|---|---|---|---|"]
    for arm, entry in record["arms"].items():
        lines.append(f"| {arm} ({', '.join(entry['memory_format'])}) | "
                     f"{', '.join(f'{a:.2f}' for a in entry['test_accuracy'])} % | "
                     f"{entry['mean']:.2f} ± {entry['std']:.2f} % | {entry['images_per_second']:,.0f} | "
                     f"{entry['training_s']:.0f} s |")
    lines += ["", f"{record['verdict']}. Test data: {record['test_data']} (n = "
              f"{record['test_images']:,} each); commit {record['commit'][:7]}."]
    return "\n".join(lines)


# The files to read to learn the method, in order, and what each teaches.
READING_ORDER = (
    ("final-code.ipynb", "the report: every stage in order, with the network, the step and the "
                         "loop shown from their modules"),
    ("helpers/model.py", "the network: BasicBlock, ResNet, the smaller students"),
    ("helpers/recipes.py", "every setting of the two recipes, with its source"),
    ("helpers/augment.py", "augmentation, per image and batched on the device"),
    ("helpers/step.py", "one training step"),
    ("helpers/training.py", "optimizer, schedule, weight average, train_one_epoch, fit, exact resume"),
    ("helpers/evaluation.py", "test-time views, evaluate, accuracy intervals, calibration"),
)
# Where to go next, and why; not the method itself.
FURTHER = (
    ("helpers/stages.py", "how the notebook and the command line string the method together, "
                          "with every check at each stage's door"),
    ("helpers/options/compiled_step.py", "the same step compiled and captured as a CUDA graph, for GPUs"),
    ("helpers/data.py", "the data: sources, subsets, the validation split, which images they are"),
)


def reading_order(root: str = ROOT) -> str:
    """The reading-order table of docs/method.md, with each file's lines counted now."""
    def lines(path: str) -> str:
        full = os.path.join(root, path)
        if path.endswith(".ipynb"):  # the cells' source, not the saved outputs
            with open(full) as file:
                cells = json.load(file)["cells"]
            return f"{sum(len(''.join(c['source']).splitlines()) for c in cells):,} (cells)"
        with open(full) as file:
            return f"{sum(1 for _ in file):,}"

    rows = ["| | file | lines | read it for |", "|---|---|---|---|"]
    rows += [f"| {i} | [`{path}`](../{path}) | {lines(path)} | {why} |"
             for i, (path, why) in enumerate(READING_ORDER, start=1)]
    rows += [f"| then | [`{path}`](../{path}) | {lines(path)} | {why} |" for path, why in FURTHER]
    return "\n".join(rows)


def render(page: str, blocks: Dict[str, str], name_of_page: str = "README.md") -> str:
    for name, text in blocks.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end generated: {name} -->)", re.S)
        if not pattern.search(page):
            raise SystemExit(f"{name_of_page} has no '<!-- generated: {name} -->' block")
        page = pattern.sub(lambda m: m[1] + text + "\n" + m[2], page)
    return page


def pages(results_dir: str, root: str = ROOT) -> Dict[str, Dict[str, str]]:
    """Page (relative to the repository) -> its generated blocks."""
    runs, evaluations = load_runs(results_dir), load_runs(results_dir, evaluations=True)
    calibration, offset = load_calibration(results_dir), load_sample_offset(results_dir)
    return {"README.md": {"headline": headline(runs, results_dir),
                          "summary": summary_table(runs, calibration, offset),
                          "mirror-cost": mirror_cost_table(evaluations),
                          "mirror-training-cost": mirror_training_cost_table(results_dir),
                          "official-training": official_training_table(results_dir)},
            os.path.join("results", "README.md"): {
                "runs": runs_table(runs),
                "evaluations": evaluations_table(evaluations, calibration, offset),
                "sizes": size_table(results_dir, link=""),
                "under-shift": under_shift_tables(results_dir),
                "under-shift-official": under_shift_tables(
                    results_dir, os.path.join(OFFICIAL_RUN, "under-shift"),
                    "python scripts/reference_official_cpu.py measure", by_kind=True),
                "ablation": ablation_table(results_dir),
                "bf16-parity": bf16_parity_table(results_dir)},
            os.path.join("docs", "method.md"): {"reading-order": reading_order(root)},
            os.path.join("docs", "parameters.md"): {"parameters": parameters_table()}}


def read_page(path: str) -> str:
    with open(path) as file:
        return file.read()


def write_page(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--results", default=os.path.join(ROOT, "results"))
    parser.add_argument("--root", default=ROOT, help="the folder holding README.md, docs/ and results/")
    args = parser.parse_args()
    stale = []
    for page, blocks in pages(args.results, args.root).items():
        path = os.path.join(args.root, page)
        current = read_page(path)
        updated = render(current, blocks, page)
        if updated == current:
            continue
        stale.append(page)
        if not args.check:
            write_page(path, updated)
    if args.check and stale:
        print(f"generated tables out of date in {', '.join(stale)}: run python scripts/results_tables.py")
        sys.exit(1)


if __name__ == "__main__":
    main()
