import os

import pytest
import torch

from helpers.checkpoints import (CheckpointError, atomic_write, atomic_write_json, load_checkpoint,
                                 save_checkpoint)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 3, "history": [{"lr": 0.1}]})
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 1})

    def half_then_crash(file):
        file.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, half_then_crash)
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temporary file left behind


def test_a_process_killed_midway_leaves_the_previous_file_intact(tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / "metrics.json")
    atomic_write_json(path, {"epoch": 1})
    script = (
        "import os, sys; sys.path.insert(0, %r)\n"
        "from helpers.checkpoints import atomic_write\n"
        "def write(file):\n"
        "    file.write(b'{\"epoch\": 2, truncated'); file.flush(); os._exit(9)\n"
        "atomic_write(%r, write)\n" % (os.getcwd(), path))
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    with open(path) as file:
        assert file.read().strip() == '{\n  "epoch": 1\n}'


def test_missing_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(str(tmp_path / "checkpoint.pt"))


def test_corrupt_checkpoint_is_reported_as_such(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(str(path))


class Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/should-never-exist",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    torch.save({"model": {}, "evil": Payload()}, path)
    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
        load_checkpoint(path)
