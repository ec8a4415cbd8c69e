import importlib.util
import os

import numpy as np
import pytest
import torch

from conftest import ROOT
from helpers.data import CIFAR10_CLASSES

spec = importlib.util.spec_from_file_location("calibrate_mirror",
                                              os.path.join(ROOT, "scripts", "calibrate_mirror.py"))
calibrate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(calibrate)


def load_split(work_dir, split):
    return torch.load(os.path.join(work_dir, "cifar10", f"{split}.pt"), weights_only=True)


def test_airbench_files_hold_uint8_images_int64_labels_and_the_class_names(image_folder, tmp_path):
    calibrate.write_airbench_data(image_folder, str(tmp_path / "work"))
    for split in ("train", "test"):
        content = load_split(tmp_path / "work", split)
        assert set(content) == {"images", "labels", "classes"}
        assert content["images"].dtype == torch.uint8 and content["images"].shape == (60, 32, 32, 3)
        assert content["labels"].dtype == torch.int64 and content["labels"].shape == (60,)
        assert content["classes"] == list(CIFAR10_CLASSES)


def test_airbench_labels_follow_cifar10_class_order_and_match_their_images(image_folder, tmp_path):
    calibrate.write_airbench_data(image_folder, str(tmp_path / "work"))
    content = load_split(tmp_path / "work", "test")
    labels = content["labels"].numpy()
    assert np.array_equal(labels, np.repeat(np.arange(10), 6))
    # The fixture writes each image's label into its first pixel.
    assert np.array_equal(content["images"][:, 0, 0, 0].numpy(), labels)


def test_cpu_machine_is_refused_with_the_reason_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    arguments = ["--data_dir", str(tmp_path / "no-such-folder"), "--out", str(tmp_path / "out"),
                 "--work", str(tmp_path / "work")]
    with pytest.raises(SystemExit) as stopped:
        calibrate.main(arguments)
    # A string code is printed to stderr and exits with status 1.
    assert isinstance(stopped.value.code, str) and "CUDA" in stopped.value.code
    assert not os.path.exists(tmp_path / "out" / "airbench.json")
    assert not os.path.exists(tmp_path / "work")


def test_summary_has_mean_sample_std_and_gap_to_the_published_accuracy():
    entry = calibrate.summarize(94.01, [93.8, 94.0, 94.2], [3.9, 3.8, 3.8], [5.0, 4.9, 4.9])
    assert entry["mirror_mean"] == pytest.approx(94.0)
    assert entry["mirror_std"] == pytest.approx(0.2)
    assert entry["delta"] == pytest.approx(0.01)
    assert entry["runs"] == 3 and entry["mirror_accuracies"] == [93.8, 94.0, 94.2]


def test_summary_of_one_run_has_no_std():
    entry = calibrate.summarize(96.05, [95.5], [30.0], [35.0])
    assert entry["mirror_std"] is None and entry["delta"] == pytest.approx(0.55)


def test_seconds_are_read_from_the_eval_row_of_airbench_table():
    printed = ("|  run     |  epoch  |  train_loss  |  train_acc  |  val_acc  |  tta_val_acc  "
               "|  total_time_seconds  |\n"
               "|       0  |      9  |      0.0011  |     0.9902  |   0.9371  |               "
               "|              3.4100  |\n"
               "|          |   eval  |      0.0011  |     0.9902  |   0.9371  |       0.9401  "
               "|              3.8312  |\n")
    assert calibrate.airbench_seconds(printed) == pytest.approx(3.8312)
    assert calibrate.airbench_seconds("no table here\n") is None


def test_each_measurement_refuses_data_that_is_not_what_it_measures(image_folder, tmp_path):
    names = calibrate.write_airbench_data(image_folder, str(tmp_path / "work"))
    assert names["test"] == "image folders (not a known copy of CIFAR-10)"
    for measure in ("mirror", "offset"):
        with pytest.raises(SystemExit, match=f"--measure {measure} needs .* nothing was trained"):
            calibrate.check_data(names, measure)
    calibrate.check_data(calibrate.NEEDED_DATA["offset"], "offset")


def test_the_offset_is_the_mean_on_images_0_999_minus_the_published_accuracy(tmp_path):
    import json
    import sys

    entry = calibrate.offset_entry(94.01, [94.6, 94.4, 94.5], [3.8, 3.8, 3.9], [5.0, 5.0, 5.1])
    assert entry["offset"] == pytest.approx(0.49) and entry["std"] == pytest.approx(0.1)
    # results_tables reads the file as the script writes it
    os.makedirs(tmp_path / "calibration")
    (tmp_path / "calibration" / "airbench-official.json").write_text(json.dumps({"airbench94": entry}))
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import results_tables

    assert results_tables.load_sample_offset(str(tmp_path)) == pytest.approx(0.49)
    run = {"data": {"test": {"name": "CIFAR-10 official test images 0–999"}}}
    assert results_tables.official_equivalent(93.0, run, None, 0.49) == \
        "92.51 % (estimated: 0–999 offset +0.49)"
    assert results_tables.official_equivalent(93.0, run, None, None) == \
        "not yet measured (needs the 0–999 offset)"
