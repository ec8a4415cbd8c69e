"""What a GPU session carries: scripts/gpu_session.sh prepares three parts of the official images,
one for each of three calls, and each call carries the repository's files besides its part. A
call carries at most 64 MiB, so every file tracked here counts against the first call's part,
except an unfinished CPU run's checkpoint, which is taken out of the tree before the calls."""
import os
import subprocess

import pytest

from conftest import ROOT

SHARED_DATA = os.path.join(ROOT, "..", "shared", "data", "cifar10-official")


@pytest.mark.skipif(not os.path.isfile(os.path.join(SHARED_DATA, "data_batch_1.webp")),
                    reason="needs the official images beside the repository (../shared)")
def test_each_call_of_a_gpu_session_carries_at_most_64_MiB():
    result = subprocess.run(["bash", "scripts/gpu_session.sh", "prepare"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # An unfinished CPU run's checkpoint, when one is committed, is named apart and not counted.
    lines = [line for line in result.stdout.splitlines() if not line.startswith("not counted:")]
    assert [line.split(":")[0] for line in lines] == [".gpu1", ".gpu2", ".gpu3"], lines
    assert all("64 MiB at most" in line for line in lines)
