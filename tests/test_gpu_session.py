"""What a GPU session carries: scripts/gpu_session.sh prepares three parts of the official images,
one for each of three calls, and each call carries the repository's files besides its part. A
call carries at most 64 MiB, so every file tracked here counts against the first call's part,
except the weights files that `aside` takes out of the tree for the calls (no GPU stage reads
them) and `restore` puts back."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

SHARED = os.path.join(ROOT, "..", "shared")
SCRIPT = os.path.join("scripts", "gpu_session.sh")
needs_shared = pytest.mark.skipif(
    not os.path.isfile(os.path.join(SHARED, "data", "cifar10-official", "data_batch_1.webp")),
    reason="needs the official images beside the repository (../shared)")


def session(folder: str, command: str) -> str:
    result = subprocess.run(["bash", SCRIPT, command], cwd=folder, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OUT": folder + "-out"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def git(folder: str, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=folder, capture_output=True, text=True,
                          check=True).stdout


def check_parts(stdout: str) -> None:
    lines = [line for line in stdout.splitlines() if line.startswith(".gpu")]
    assert [line.split(":")[0] for line in lines] == [".gpu1", ".gpu2", ".gpu3"], stdout
    assert all("64 MiB at most" in line for line in lines)


@needs_shared
def test_each_call_of_a_gpu_session_carries_at_most_64_MiB():
    check_parts(session(ROOT, "prepare"))


@needs_shared
def test_a_new_released_model_still_fits_and_aside_and_restore_leave_the_tree_as_it_was(tmp_path):
    # A clone of the repository with one more released full-size model.pt (9.4 MB, as every
    # full network's float16 weights), and this checkout's script.
    clone = str(tmp_path / "repo")
    git(ROOT, "clone", "-q", "--no-checkout", ROOT, clone)
    git(clone, "checkout", "-q", "HEAD")
    shutil.copy(os.path.join(ROOT, SCRIPT), os.path.join(clone, SCRIPT))
    os.symlink(os.path.abspath(SHARED), str(tmp_path / "shared"))
    released = os.path.join("results", "new-run", "model.pt")
    os.makedirs(os.path.join(clone, "results", "new-run"))
    with open(os.path.join(clone, released), "wb") as file:
        file.write(os.urandom(9_445_715))
    git(clone, "add", SCRIPT, released)
    git(clone, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "new")

    prepared = session(clone, "prepare")
    check_parts(prepared)
    before = git(clone, "ls-files", "-s")
    session(clone, "aside")
    tracked = git(clone, "ls-files").split()
    assert released not in tracked and not os.path.exists(os.path.join(clone, released))
    assert "results/reference-seed0/model.pt" in tracked  # the step check trains from it
    assert not [path for path in tracked if path.endswith(".pt")
                and path != "results/reference-seed0/model.pt"]
    assert git(clone, "status", "--porcelain", "--untracked-files=all", "--", ".gpu-aside") == ""
    check_parts(session(clone, "prepare"))  # counted the same with nothing left to set aside
    session(clone, "restore")
    assert git(clone, "ls-files", "-s") == before
    assert git(clone, "status", "--porcelain") == ""
