"""Several runs at once against one alone: the runner, on two tiny CPU runs."""
import json
import subprocess
import sys

from conftest import ROOT


def test_two_tiny_runs_together_are_measured_against_one_alone(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/concurrent_runs.py", "--runs", "2", "--out", str(tmp_path), "--",
         "--data_source", "synthetic", "--train_subset", "40", "--val_size", "0",
         "--test_subset", "20", "--epochs", "1", "--batch_size", "20", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((tmp_path / "concurrency.json").read_text())
    assert summary["alone"]["runs"] == 1 and summary["together"]["complete"] == 2
    assert summary["together"]["images"] == 2 * summary["alone"]["images"] == 80
    assert summary["ratio_wall_clock"] > 0 and summary["ratio_training"] > 0
    # Each run has its own folder and seed.
    seeds = [json.loads((tmp_path / "together" / f"run-{k}" / "metrics.json").read_text())["seed"]
             for k in range(2)]
    assert seeds == [0, 1] and "2 runs together" in result.stdout


def test_notebook_runs_take_the_options_as_papermill_parameters():
    sys.path.insert(0, f"{ROOT}/scripts")
    from concurrent_runs import as_notebook_parameters

    assert as_notebook_parameters(["--epochs", "3", "--data-dir", "x"]) == \
        ["-p", "epochs", "3", "-p", "data_dir", "x"]
