"""helpers/options/ holds what a default run never uses: a default run, from the command line or
the notebook, imports none of it, and a run whose parameters turn an option on imports it."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

TINY = ["--data_source", "synthetic", "--train_subset", "200", "--val_size", "50",
        "--test_subset", "100", "--batch_size", "32", "--width_multiplier", "0.25",
        "--blocks", "1 1 1", "--epochs", "1", "--progress", "none"]
# Runs the command line's main() in this process, then lists the option modules it imported.
LOADED = ("import sys; from helpers import cli; cli.main(sys.argv[1:]); "
          "print('OPTIONS', sorted(m for m in sys.modules if m.startswith('helpers.options.')))")


def option_modules_after(arguments, tmp_path):
    done = subprocess.run([sys.executable, "-c", LOADED, *arguments, "--output_dir",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("OPTIONS"))
    return eval(line[len("OPTIONS"):])


def test_a_default_command_line_run_imports_no_option_module(tmp_path):
    assert option_modules_after(TINY, tmp_path) == []


def test_a_run_that_turns_options_on_imports_them(tmp_path):
    loaded = option_modules_after([*TINY, "--quantize", "int8", "--calibration_images", "100",
                                   "--corruptions", "True"], tmp_path)
    # int8 quantization is two modules: its calibration images, and the quantization itself.
    assert loaded == ["helpers.options.calibration", "helpers.options.corruptions",
                      "helpers.options.quantization"]


def test_a_default_notebook_run_imports_no_option_module(tmp_path):
    papermill = pytest.importorskip("papermill")
    import nbformat

    notebook = nbformat.read(os.path.join(ROOT, "final-code.ipynb"), as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import sys\nprint(sorted(m for m in sys.modules if m.startswith('helpers.options.')))"))
    probe = tmp_path / "probe.ipynb"
    nbformat.write(notebook, str(probe))
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(probe), str(executed), kernel_name="python3", cwd=ROOT,
                               progress_bar=False, parameters=dict(
                                   epochs=1, data_source="synthetic", train_subset=200,
                                   val_size=50, test_subset=100, batch_size=32,
                                   width_multiplier=0.25, blocks=[1, 1, 1],
                                   output_dir=str(tmp_path / "out")))
    with open(executed) as file:
        last = json.load(file)["cells"][-1]
    assert "".join("".join(output.get("text", "")) for output in last["outputs"]).strip() == "[]"
