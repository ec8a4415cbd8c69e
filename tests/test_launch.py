"""Messages name a setting as it is typed where the run was started."""
from helpers.env import COMMAND_LINE, NOTEBOOK, PAPERMILL, PYTHON, launcher, setting


def test_a_setting_is_written_as_each_way_of_starting_a_run_types_it():
    assert setting("resume", True, PAPERMILL) == "`-p resume True`"
    assert setting("resume", True, COMMAND_LINE) == "`--resume True`"
    assert setting("resume", True, NOTEBOOK) == "`resume = True` in the parameters cell"
    assert setting("resume", True, PYTHON) == "`resume=True`"


def test_values_with_spaces_or_brackets_are_quoted_for_the_shell():
    assert setting("output_dir", "runs/my run", PAPERMILL) == "`-p output_dir 'runs/my run'`"
    assert setting("milestones", (30, 60), COMMAND_LINE) == "`--milestones '[30, 60]'`"
    assert setting("recipe_overrides", {"cutout_size": 0}, PAPERMILL) == \
        """`-p recipe_overrides '{"cutout_size": 0}'`"""
    assert setting("output_dir", "runs/a", NOTEBOOK) == "`output_dir = 'runs/a'` in the parameters cell"


def test_plain_python_is_neither_a_notebook_nor_papermill():
    assert launcher() == PYTHON


def test_the_command_line_speaks_in_options(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    (tmp_path / "checkpoint.pt").write_bytes(b"")  # a training run's folder
    result = subprocess.run([sys.executable, "-m", "helpers.cli", "--data_source", "synthetic",
                             "--output_dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 2 and "Continue it with `--resume True`" in result.stderr


def test_papermill_is_recognised_by_the_program_a_process_runs_not_by_a_mention():
    from helpers.env import runs_program

    assert runs_program(["/usr/bin/python3", "/usr/local/bin/papermill", "in.ipynb"], "papermill")
    assert runs_program(["papermill", "in.ipynb", "out.ipynb"], "papermill")
    assert runs_program(["python3", "-m", "papermill", "in.ipynb"], "papermill")
    assert not runs_program(["bash", "-c", "papermill in.ipynb out.ipynb; echo done"], "papermill")
    assert not runs_program(["python3", "-m", "pytest", "tests/test_papermill.py"], "papermill")
