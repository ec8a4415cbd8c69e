"""torchrun with 2 CPU processes (gloo) trains the same weights as one process.

One SGD step of the full network: float rounding differences between the two runs grow with
every step of this deep BatchNorm network, so longer runs agree only loosely. After one step
the synchronised BatchNorm agrees to ~1e-5, while per-rank BatchNorm statistics would differ
by ~1e-2 (measured while writing this test).
"""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from helpers.files import load_checkpoint


def run_cli(output_dir, processes):
    arguments = ["--data_source", "synthetic", "--train_subset", "26", "--val_size", "10",
                 "--batch_size", "16", "--epochs", "1", "--lr", "0.01", "--device", "cpu",
                 "--amp", "off",  # fp32: the tolerance below is fp32's
                 "--progress", "lines",
                 "--output_dir", str(output_dir), "--figures_dir", str(output_dir / "figures")]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    result = subprocess.run(launcher + ["-m", "helpers.cli", *arguments], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    logs = {n: run_cli(folder / f"ranks{n}", n) for n in (1, 2)}
    return folder, logs


def test_two_ranks_train_the_same_weights_as_one_process(runs):
    folder, _ = runs
    single = load_checkpoint(str(folder / "ranks1" / "checkpoint.pt"))["model"]
    parallel = load_checkpoint(str(folder / "ranks2" / "checkpoint.pt"))["model"]
    assert single.keys() == parallel.keys()
    for name, tensor in single.items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, parallel[name], rtol=1e-3, atol=1e-4), name
        else:
            assert torch.equal(tensor, parallel[name]), name


def test_only_rank_zero_logs_and_writes(runs):
    folder, logs = runs
    assert logs[2].count("epoch   1/1") == 1
    assert os.path.exists(folder / "ranks2" / "metrics.json")
    assert os.path.exists(folder / "ranks2" / "figures" / "confusion_matrix.png")


def test_under_torchrun_rank_zero_downloads_first_while_the_others_wait(tmp_path):
    """Each rank logs when it enters and leaves the block; rank 0 takes a second inside."""
    log = tmp_path / "order.txt"
    script = tmp_path / "ranks.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from helpers.distributed import init_distributed, main_rank_first, close_distributed\n"
        "context = init_distributed(False)\n"
        "def note(what):\n"
        f"    with open({str(log)!r}, 'a') as file: file.write(f'{{what}} {{context.rank}}\\n')\n"
        "with main_rank_first(context):\n"
        "    note('enter')\n"
        "    time.sleep(1.0 if context.rank == 0 else 0)\n"
        "    note('leave')\n"
        "close_distributed()\n")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", str(script)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert log.read_text().split("\n")[:4] == ["enter 0", "leave 0", "enter 1", "leave 1"]
