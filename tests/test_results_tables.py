import importlib.util
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


def test_seeds_of_one_setting_share_a_row_with_mean_and_sample_std():
    group = [{"test_accuracy": a, "best_val_accuracy": None} for a in (89.0, 90.0, 91.0)]
    assert tables.accuracy_cell(group).startswith("**90.00 ± 1.00 %**")


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(SystemExit, match="generated: runs"):
        tables.render("# no markers here\n", {"runs": "| table |"})
