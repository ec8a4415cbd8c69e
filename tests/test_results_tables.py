import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("results_tables", os.path.join(ROOT, "scripts", "results_tables.py"))
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)


def test_readme_tables_are_the_ones_the_committed_results_give():
    result = subprocess.run([sys.executable, "scripts/results_tables.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def run(test_accuracies, seconds=2.0):
    return {"history": [{"epoch": i + 1, "seconds": seconds, "test_accuracy": accuracy}
                        for i, accuracy in enumerate(test_accuracies)]}


def test_time_to_accuracy_is_the_first_epoch_at_or_above_the_mark():
    assert tables.time_to(run([90.0, 94.0, 93.0, 95.2]), 94.0) == "epoch 2, 4 s"
    assert tables.time_to(run([90.0, 94.0, 93.0, 95.2]), 95.0) == "epoch 4, 8 s"
    assert tables.time_to(run([90.0, 91.5]), 93.41) == "not reached (best 91.50 %)"
    assert tables.time_to(run([None, None]), 93.41) == "not recorded"


def test_seeds_of_one_setting_share_a_row_with_mean_sample_std_n_and_interval():
    group = [{"test_accuracy": a, "best_val_accuracy": None, "test_images": 10_000}
             for a in (89.0, 90.0, 91.0)]
    assert tables.accuracy_cell(group) == ("**90.00 ± 1.00 %** (89.00, 90.00, 91.00: mean ± sample "
                                           "std of 3 seeds; n = 10,000 each, 95 % interval of one "
                                           "run ±0.6)")
    one = [{"test_accuracy": 90.5, "best_val_accuracy": 91.0, "test_images": 1_000}]
    assert tables.accuracy_cell(one) == ("90.50 % (95 % interval 88.5–92.2 %, n = 1,000) "
                                         "(best val 91.00 %)")


def full_length_run(trained_on, tested_on, device, accuracy, seed=0):
    return {"config": {"recipe": "reference", "seed": seed, "device_kind": device},
            "device": device, "commit": "abc1234", "recipe": "reference", "epochs": 75,
            "batch_size": 256, "seed": seed, "val_images": 0, "train_images": 50_000,
            "data": {"train": {"name": trained_on}, "test": {"name": tested_on}},
            "test_accuracy": accuracy, "test_images": 1_000, "wall_time_s": 100.0}


def test_the_summary_shows_full_length_runs_on_any_hardware_the_official_images_first():
    mirror = full_length_run("CIFAR-10 (JPEG mirror) training images",
                             "CIFAR-10 (JPEG mirror) test images 0–999", "cuda: NVIDIA H200", 89.0)
    official = full_length_run("CIFAR-10 official training images",
                               "CIFAR-10 official test images 0–999", "cpu", 92.0)
    short = {**official, "train_images": 4_500, "val_images": 500, "commit": "def5678"}
    rows = tables.summary_table([mirror, short, official], None, offset=0.5).splitlines()[2:]
    assert len(rows) == 2
    assert "CIFAR-10 official: training images" in rows[0] and rows[0].endswith("| cpu |")
    assert "91.50 % (estimated: 0–999 offset +0.50)" in rows[0]
    assert "JPEG mirror" in rows[1] and rows[1].endswith("| NVIDIA H200 |")


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(SystemExit, match="generated: runs"):
        tables.render("# no markers here\n", {"runs": "| table |"})


def test_official_equivalent_adds_the_delta_of_the_trainer_with_the_nearest_mirror_accuracy(tmp_path):
    import json

    spec = importlib.util.spec_from_file_location("calibrate_mirror", os.path.join(ROOT, "scripts", "calibrate_mirror.py"))
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)
    # airbench.json exactly as the calibration script writes it
    trainers = {"airbench94": calibrate.summarize(94.01, [91.0, 91.02], [3.0, 3.1], [5.0, 5.0]),
                "airbench96": calibrate.summarize(96.05, [94.5, 94.6], [40.0, 41.0], [50.0, 50.0])}
    os.makedirs(tmp_path / "calibration")
    (tmp_path / "calibration" / "airbench.json").write_text(json.dumps({"trainers": trainers}))
    calibration = tables.load_calibration(str(tmp_path))
    mirror = {"data": {"test": {"name": "CIFAR-10 (JPEG mirror) test images"}}}
    assert tables.official_equivalent(89.5, mirror, calibration) == "92.50 % (estimated, airbench94 delta)"
    assert tables.official_equivalent(93.5, mirror, calibration) == "95.00 % (estimated, airbench96 delta)"
    assert tables.official_equivalent(89.5, mirror, None) == "not yet measured"
    official = {"data": {"test": {"name": "CIFAR-10 official test images"}}}
    assert tables.official_equivalent(93.0, official, calibration) == "(measured on all 10,000)"
    assert tables.load_calibration(str(tmp_path / "nothing-here")) is None


def test_parameters_table_lists_every_parameter_with_its_default():
    from helpers.settings import PARAMETER_NAMES

    table = tables.parameters_table()
    for name in PARAMETER_NAMES:
        assert f"| `{name}=" in table
    assert "| `epochs=75` | integer in [1, 10000] | training epochs | training |" in table
    device, = [row for row in table.splitlines() if row.startswith("| `device=")]
    assert device.endswith("| |")  # acts in every run: the last cell is blank


def test_the_data_cell_names_a_copy_of_cifar10_once_and_each_split_after_it():
    mirror = {"data": {"train": {"name": "CIFAR-10 (JPEG mirror) training images, a class-balanced subset of 5,000"},
                       "test": {"name": "CIFAR-10 (JPEG mirror) test images"}}}
    assert tables.data_cell(mirror) == ("CIFAR-10 (JPEG mirror): training images, a class-balanced "
                                        "subset of 5,000; test images")
    mixed = {"data": {"train": {"name": "CIFAR-10 (JPEG mirror) training images"},
                      "test": {"name": "CIFAR-10 official test images 0–999"}}}
    assert tables.data_cell(mixed) == "CIFAR-10 (JPEG mirror) training images; CIFAR-10 official test images 0–999"
    evaluation = {"data": {"test": {"name": "CIFAR-10 official test images 0–999"}}}
    assert tables.data_cell(evaluation) == "CIFAR-10 official test images 0–999"


def test_the_mirror_training_cost_table_reads_its_record_and_says_when_there_is_none(tmp_path):
    assert tables.mirror_training_cost_table(str(tmp_path)).startswith("Not yet measured")

    def run(train, test, accuracy, n):
        return {"folder": "f", "train_data": train, "test_data": test, "test_accuracy": accuracy,
                "test_images": n, "training_s": 3600.0, "commit": "abcdef0123",
                "training_precision": "bf16", "images_per_second": 1100.0}
    record = {"runs": {"official": run("official training", "official 0-999", 85.0, 1000),
                       "mirror": run("mirror training", "mirror test", 83.0, 10000),
                       "mirror on official test images 0-999": run(None, "official 0-999", 84.0, 1000)},
              "cost_points": 1.0,
              "mirror_vs_official": {"images": 1000, "answer_changed": 90, "now_right": 40,
                                     "now_wrong": 50}}
    (tmp_path / "mirror-cost-cpu").mkdir()
    (tmp_path / "mirror-cost-cpu" / "comparison.json").write_text(json.dumps(record))
    table = tables.mirror_training_cost_table(str(tmp_path)).splitlines()
    assert table[2] == ("| official training | official 0-999 | 85.00 % (95 % interval 82.7–87.1 %, "
                        "n = 1,000) | 60 min (bf16) | 1,100 | abcdef0 |")
    assert table[4].startswith("| mirror training (the same weights) | official 0-999 | 84.00 %")
    assert table[-1] == ("On the same 1,000 images, training on the mirror instead of the official "
                         "pixels costs **1.00 points** at quarter width: 50 answers became wrong and "
                         "40 right, 0 went from one wrong class to another (90 changed; McNemar's "
                         "exact test, two-sided: p = 0.34).")


def test_mcnemar_exact_p_is_the_two_sided_binomial_tail_of_the_changed_answers():
    # 1 of 10 changed answers one way: 2 * (1 + 10) / 2**10; an even split is no evidence.
    assert tables.mcnemar_exact_p(9, 1) == pytest.approx(22 / 1024)
    assert tables.mcnemar_exact_p(1, 9) == tables.mcnemar_exact_p(9, 1)
    assert tables.mcnemar_exact_p(3, 0) == pytest.approx(0.25)
    assert tables.mcnemar_exact_p(5, 5) == 1.0 and tables.mcnemar_exact_p(0, 0) == 1.0


def test_durations_read_in_seconds_below_an_hour_and_hours_above():
    assert tables.duration(156.4) == "156 s"
    assert tables.duration(7.45 * 3600) == "7.5 h"


def trained_run(folder, train_name, seconds, device):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "data": {"train": {"name": train_name}}, "wall_time_s": seconds, "device": device}))
    return str(folder / "model.pt")


def test_the_official_training_table_reads_the_runs_measurements_and_says_when_there_are_none(tmp_path):
    assert tables.official_training_table(str(tmp_path)).startswith("Not yet measured")
    run = tmp_path / tables.OFFICIAL_RUN
    official = trained_run(run, "CIFAR-10 official training images", 27_000.0, "cpu")
    mirror = trained_run(tmp_path / "reference-seed0", "CIFAR-10 (JPEG mirror) training images",
                         156.0, "cuda: NVIDIA H200")
    record = {
        "test_data": "CIFAR-10 official test images 0–999", "report_test_accuracy": 93.41,
        "official_trained": {"weights": official, "test_accuracy": 93.9, "test_images": 1000,
                             "test_accuracy_ci95": [92.3, 95.2], "recorded_test_accuracy": 94.0,
                             "text": "93.90 % (95 % interval 92.3–95.2 %, n = 1,000)"},
        "mirror_trained": {"weights": mirror, "text": "90.50 % (95 % interval 88.5–92.2 %, n = 1,000)"},
        "report_inside_interval": True, "training_cost_of_the_mirror_points": 3.4,
        # from the mirror-trained network to this one: 50 answers became right, 16 wrong
        "official_vs_mirror": {"images": 1000, "answer_changed": 80, "now_right": 50, "now_wrong": 16}}
    (run / "comparison.json").write_text(json.dumps(record))
    table = tables.official_training_table(str(tmp_path)).splitlines()
    assert table[2] == (f"| `{official}` | CIFAR-10 official training images, 7.5 h on cpu | "
                        "CIFAR-10 official test images 0–999 | 93.90 % (95 % interval 92.3–95.2 %, "
                        "n = 1,000) |")
    assert table[3].startswith(f"| `{mirror}` | CIFAR-10 (JPEG mirror) training images, 156 s on "
                               "NVIDIA H200 |")
    assert len(table) == 8  # no mirror-test row until it is measured
    assert "lies **inside** the 95 % interval of this run on images 0–999 (92.3–95.2 %)" in table[5]
    assert "recorded 94.00 % with its float32 weights" in table[5]
    assert table[7].startswith("On the same 1,000 images, training on the mirror instead of the "
                               "official pixels costs **3.40 points** at full width: 50 answers "
                               "became wrong and 16 right, 14 went from one wrong class to another")
    (run / "mirror-test").mkdir()
    (run / "mirror-test" / "metrics.json").write_text(json.dumps({
        "data": {"test": {"name": "CIFAR-10 (JPEG mirror) test images"}}, "test_accuracy": 89.0,
        "test_images": 10_000}))
    table = tables.official_training_table(str(tmp_path)).splitlines()
    assert table[4] == (f"| `{official}` (the same weights) | - | CIFAR-10 (JPEG mirror) test "
                        "images | 89.00 % (95 % interval 88.4–89.6 %, n = 10,000) |")


def test_under_shift_by_kind_orders_the_kinds_by_the_difference_of_their_mean_over_severities():
    def network(accuracy):
        return {"corruptions": {"accuracy": accuracy, "test_images": 1000}}
    record = {"networks": {"a": network({"blur": [80, 70, 60, 50, 40], "jpeg": [90, 88, 86, 84, 82]}),
                           "b": network({"blur": [81, 71, 61, 51, 41], "jpeg": [88, 86, 84, 82, 80]})},
              "comparisons": [{"what": "b instead of a", "without": "a", "with": "b"}]}
    lines = tables.under_shift_by_kind(record)
    assert lines[1] == "b instead of a, kind by kind (n = 1,000 images per kind and severity):"
    assert lines[-2:] == ["| jpeg | 86.00 % | 84.00 % | -2.00 points | 82.0 → 80.0 % |",
                          "| blur | 60.00 % | 61.00 % | +1.00 points | 40.0 → 41.0 % |"]
    assert tables.under_shift_by_kind({"comparisons": []}) == []


def test_the_headline_sets_the_official_run_against_the_report_then_the_mirror_runs(tmp_path):
    mirror = [full_length_run("CIFAR-10 (JPEG mirror) training images",
                              "CIFAR-10 (JPEG mirror) test images", "cuda: NVIDIA H200", a, seed)
              for seed, a in enumerate((89.0, 90.0))]
    text = tables.headline(mirror, str(tmp_path))
    assert text.startswith("Trained and tested on CIFAR-10 (JPEG mirror), a JPEG copy, the "
                           "report's recipe scores 89.50 ± 0.71 % (89.00, 90.00")
    assert "is not yet measured" in text
    (tmp_path / tables.OFFICIAL_RUN).mkdir()
    record = {"official_trained": {"test_accuracy": 92.0, "test_accuracy_ci95": [90.2, 93.5],
                                   "test_images": 1000},
              "report_test_accuracy": 93.41, "report_inside_interval": False}
    (tmp_path / tables.OFFICIAL_RUN / "comparison.json").write_text(json.dumps(record))
    text = tables.headline(mirror, str(tmp_path))
    assert ("scores **92.00 %** on official test images 0–999 (95 % interval 90.2–93.5 %, n = "
            "1,000): **short of the report's 93.41 %**, which lies outside that interval") in text
    assert "not yet measured" not in text and "JPEG mirror" in text
    record.update(report_inside_interval=True)
    (tmp_path / tables.OFFICIAL_RUN / "comparison.json").write_text(json.dumps(record))
    assert "**consistent with the report's 93.41 %**, which lies inside" in tables.headline([], str(tmp_path))
