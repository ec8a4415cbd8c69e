"""A torch and a torchvision that do not belong together are named in one line."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from helpers.env import matching_torchvision


@pytest.fixture
def mismatched_torchvision(tmp_path):
    """A torchvision that fails to import as one built for another torch does."""
    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    return str(tmp_path)


def test_torchvision_releases_pair_with_torch_releases():
    assert matching_torchvision("2.14.1+cu130") == "0.29.*"
    assert matching_torchvision("2.4.0") == "0.19.*"


def test_a_cpu_only_torch_is_paired_with_the_cpu_torchvision_not_pypis():
    from helpers.env import pair_command

    assert pair_command("2.13.0+cpu") == ("pip install --force-reinstall 'torch==2.13.0' "
                                          "'torchvision==0.28.*' "
                                          "--index-url https://download.pytorch.org/whl/cpu")
    assert pair_command("2.14.1+cu130") == ("pip install --force-reinstall 'torch==2.14.1' "
                                            "'torchvision==0.29.*'")


def test_the_fix_reinstalls_a_pair_whose_versions_already_match():
    """torch 2.13.0 beside PyPI's torchvision 0.28.0: the versions are the pair's, the builds
    are not, and `pip install` of what is installed answers "Requirement already satisfied"."""
    from helpers.env import pair_command

    assert "--force-reinstall" in pair_command("2.13.0").split()


def test_the_command_line_names_a_mismatched_pair_in_one_line(mismatched_torchvision):
    result = subprocess.run([sys.executable, "-m", "helpers.cli", "--help"], cwd=ROOT,
                            capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": mismatched_torchvision})
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: torchvision ") and "does not work with torch" in lines[0]
    assert "operator torchvision::nms does not exist" in lines[0] and "pip install --force-reinstall 'torch==" in lines[0]


def test_the_notebooks_setup_cell_names_a_mismatched_pair_in_one_line(mismatched_torchvision,
                                                                      tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("PYTHONPATH", mismatched_torchvision)
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(os.path.join(ROOT, "final-code.ipynb"), str(tmp_path / "out.ipynb"),
                                   kernel_name="python3", cwd=ROOT, progress_bar=False)
    assert len(error.value.traceback) <= 2  # the message, and where it was raised
    assert error.value.traceback[0].startswith("PackageError: torchvision ")
    assert "pip install --force-reinstall 'torch==" in error.value.traceback[0]
