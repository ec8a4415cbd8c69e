"""The notebook end to end under papermill (tiny synthetic data), its clear errors, and nbval."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

papermill = pytest.importorskip("papermill")
NOTEBOOK = os.path.join(ROOT, "final-code.ipynb")
FIGURES = ("augmented_samples", "training_curves", "lr_schedule", "confusion_matrix",
           "per_class_accuracy", "reliability_diagram", "misclassified")


def committed_figures():
    """Name -> bytes of the repository's figures/ folder, which runs must leave alone."""
    folder = os.path.join(ROOT, "figures")
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def execute(output_notebook, **parameters):
    return papermill.execute_notebook(NOTEBOOK, str(output_notebook), parameters=parameters,
                                      kernel_name="python3", cwd=ROOT, progress_bar=False)


def stream_text(notebook_path):
    with open(notebook_path) as file:
        cells = json.load(file)["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The issue's smoke run: 1 epoch on 512 synthetic images, 64 of them for validation, with
    the default figures_dir; returns the folder, the executed notebook and figures/ before."""
    folder = tmp_path_factory.mktemp("smoke")
    executed = folder / "out.ipynb"
    before = committed_figures()
    execute(executed, epochs=1, data_source="synthetic", train_subset=512, val_size=64,
            test_subset=200, output_dir=str(folder / "outputs"))
    return folder, executed, before


def test_a_run_with_default_parameters_leaves_the_committed_figures_alone(smoke_run):
    folder, _, before = smoke_run
    assert committed_figures() == before
    assert sorted(os.listdir(folder / "outputs" / "figures")) == sorted(f"{n}.png" for n in FIGURES)


def test_smoke_run_writes_checkpoints_metrics_and_figures(smoke_run):
    folder, _, _ = smoke_run
    assert {"checkpoint.pt", "best.pt", "metrics.json", "model.pt"} <= set(os.listdir(folder / "outputs"))
    with open(folder / "outputs" / "metrics.json") as file:
        metrics = json.load(file)
    for key in ("params", "test_accuracy", "best_val_accuracy", "epochs", "epochs_completed",
                "wall_time_s", "device", "data_source", "recipe", "seed", "history", "torch",
                "torchvision"):
        assert key in metrics, key
    assert metrics["params"] == 4_697_162 and metrics["recipe"] == "reference"
    assert metrics["device"] == "cpu" and metrics["epochs_completed"] == 1
    assert metrics["synthetic_data"] is True and "SYNTHETIC" in metrics["warning"]
    assert metrics["test_images"] == 200 and metrics["architecture"] == "resnet"
    assert set(metrics["history"][0]) >= {"lr", "train_loss", "train_accuracy", "val_loss",
                                          "val_accuracy", "seconds"}


def images_in(notebook_path):
    with open(notebook_path) as file:
        cells = json.load(file)["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


def test_a_headless_render_under_the_agg_backend_holds_its_figures(smoke_run):
    _, executed, _ = smoke_run
    assert os.environ["MPLBACKEND"] == "Agg"  # as servers and CI set it; the kernel inherits it
    assert images_in(executed) == len(FIGURES)


def test_the_executed_notebook_opens_by_saying_which_run_it_is(smoke_run):
    folder, executed, _ = smoke_run
    with open(executed) as file:
        cells = json.load(file)["cells"]
    config_cell = next(c for c in cells if "\nconfig = " in "".join(c["source"]))
    opening = "".join("".join(o["data"]["text/markdown"]) for o in config_cell["outputs"]
                      if "text/markdown" in o.get("data", {}))  # text, or a list of its lines
    assert opening.startswith("**This run** trains the `resnet` network with the reference "
                              "recipe for 1 epoch (seed 0) on 512 training images (the first "
                              "51–52 of each class)")
    assert f"`output_dir='{folder / 'outputs'}'`" in opening and "`epochs=1`" in opening


def test_smoke_run_shows_the_model_and_says_loudly_that_the_data_is_synthetic(smoke_run):
    _, executed, _ = smoke_run
    text = stream_text(executed)
    assert text.count("SYNTHETIC") >= 3  # config banner, data summary, conclusions
    assert "resnet: 4,697,162 trainable parameters" in text and "epoch   1/1" in text
    assert "stage 3 block 3" in text and "4,697,162" in text.split("total")[-1]  # layer table
    assert "training step: eager" in text and "expected calibration error" in text
    with open(executed) as file:
        markdown = json.dumps(json.load(file)["cells"])
    assert "class BasicBlock(nn.Module)" in markdown  # the model's source, displayed


def test_executed_notebook_passes_nbval(smoke_run):
    """nbval re-runs the executed notebook and compares the NBVAL_CHECK_OUTPUT cells."""
    folder, executed, _ = smoke_run
    # The re-run gets its own output_dir: the first run's would be refused as a finished run.
    with open(executed) as file:
        notebook = json.load(file)
    injected, = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    injected["source"] = [line if not line.startswith("output_dir") else
                          f"output_dir = {str(folder / 'nbval-outputs')!r}\n" for line in injected["source"]]
    rerun = folder / "nbval.ipynb"
    with open(rerun, "w") as file:
        json.dump(notebook, file)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--nbval-lax", str(rerun)], cwd=ROOT, capture_output=True, text=True,
                            # nbval starts the kernel in the notebook's folder, outside the repo
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_dataloader_pipeline_improved_recipe_and_kaggle_submission(tmp_path):
    ids = [f"img{i}" for i in range(6)]
    images = np.random.default_rng(0).integers(0, 256, (6, 3072), dtype=np.uint8)
    kaggle = tmp_path / "test.pkl"
    with open(kaggle, "wb") as file:
        pickle.dump({b"data": images, b"ids": ids}, file)
    execute(tmp_path / "out.ipynb", epochs=1, data_source="synthetic", train_subset=256,
            val_size=32, batch_size=64, pipeline="dataloader", recipe="improved",
            kaggle_test_pkl=str(kaggle), output_dir=str(tmp_path / "outputs"),
            figures_dir=str(tmp_path / "figures"))
    with open(tmp_path / "outputs" / "submission.csv") as file:
        rows = file.read().splitlines()
    assert rows[0] == "ID,Labels" and [r.split(",")[0] for r in rows[1:]] == ids
    assert all(0 <= int(r.split(",")[1]) <= 9 for r in rows[1:])
    with open(tmp_path / "outputs" / "metrics.json") as file:
        metrics = json.load(file)
    assert metrics["recipe"] == "improved" and metrics["pipeline"] == "dataloader"
    assert metrics["recipe_settings"]["label_smoothing"] > 0
    assert metrics["params"] == 4_697_162  # the evaluated EMA copy counts as the network


def _corrupt_checkpoint(folder):
    os.makedirs(folder / "outputs")
    (folder / "outputs" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    return {"resume": True}


@pytest.mark.parametrize("parameters, expected", [
    ({"epochs": 0}, "epochs"),
    ({"epoch": 1}, "unknown parameter 'epoch' — did you mean 'epochs'?"),
    ({"epochs": "ten"}, "epochs='ten' must be an integer"),
    ({"batch_size": -5}, "batch_size"),
    ({"milestones": "[40, 30]"}, "milestones"),
    ({"data_source": "bogus"}, "data_source"),
    ({"data_source": "folder", "data_dir": "/nonexistent/cifar"}, "/nonexistent/cifar"),
    ({"data_source": "folder", "data_dir": "/nonexistent/cifar"}, "`-p data_dir FOLDER`"),
    ({"data_source": "folder", "data_dir": "EMPTY"}, "is empty"),
    ({"train_subset": 100, "val_size": 100}, "val_size"),
    ("CORRUPT", "checkpoint"),
    ({"kaggle_test_pkl": "/nonexistent/test.pkl"}, "kaggle_test_pkl='/nonexistent/test.pkl' does not exist"),
])
def test_bad_parameters_stop_the_notebook_with_a_message(tmp_path, parameters, expected):
    if parameters == "CORRUPT":
        parameters = {"data_source": "synthetic", **_corrupt_checkpoint(tmp_path)}
    if parameters.get("data_dir") == "EMPTY":
        os.makedirs(tmp_path / "empty")
        parameters = {**parameters, "data_dir": str(tmp_path / "empty")}
    parameters = {"data_source": "synthetic", "output_dir": str(tmp_path / "outputs"),
                  "figures_dir": str(tmp_path / "figures"), **parameters}
    with pytest.raises(papermill.PapermillExecutionError) as error:
        execute(tmp_path / "out.ipynb", **parameters)
    assert expected in str(error.value)
    # The reason comes first, in two lines, not at the end of a traceback through the helpers.
    assert expected in error.value.traceback[0] and len(error.value.traceback) <= 2
    assert not os.path.exists(tmp_path / "outputs" / "metrics.json")


def test_started_outside_the_repository_it_stops_in_one_line_naming_the_fix(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(NOTEBOOK, str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   cwd=str(tmp_path), progress_bar=False)
    assert len(error.value.traceback) == 1
    assert "SetupError: helpers/ is not in the working folder or above it" in error.value.traceback[0]
    assert "--cwd REPO" in error.value.traceback[0] and "CIFAR10_RESNET_HOME" in error.value.traceback[0]


def test_started_outside_the_repository_it_finds_it_through_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_RESNET_HOME", ROOT)
    with pytest.raises(papermill.PapermillExecutionError) as error:  # stops at the config cell
        papermill.execute_notebook(NOTEBOOK, str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   parameters={"epochs": 0}, cwd=str(tmp_path), progress_bar=False)
    assert "epochs=0 must be in [1, 10000]" in error.value.traceback[0]


def test_an_evaluation_shows_the_weights_own_run_and_loads_no_training_images(smoke_run, tmp_path):
    folder, _, _ = smoke_run
    executed = tmp_path / "evaluation.ipynb"
    execute(executed, data_source="synthetic", test_subset=100, output_dir=str(tmp_path / "out"),
            model_weights=str(folder / "outputs" / "model.pt"))
    text = stream_text(executed)
    assert "not trained here: the reference recipe, 1 epoch, batch 256, seed 0, on SYNTHETIC" in text
    assert "Training history, recorded by the run that trained" in text
    assert "an evaluation loads no training images" in text and "train:" not in text.split("class")[0]
    assert sorted(os.listdir(tmp_path / "out" / "figures")) == sorted(
        f"{name}.png" for name in FIGURES if name != "augmented_samples")


def test_the_committed_notebook_runs_its_parameters_cell_with_no_rendering_left_in_it():
    with open(NOTEBOOK) as file:
        notebook = json.load(file)
    tags = [tag for cell in notebook["cells"] for tag in cell["metadata"].get("tags", [])]
    assert tags.count("parameters") == 1 and "injected-parameters" not in tags
    markdown = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    assert "<!-- generated" not in markdown and "The outputs below evaluate" not in markdown
    assert not {"input_path", "output_path"} & set(notebook["metadata"].get("papermill", {}))


def test_run_all_runs_the_parameters_cell_as_a_person_edited_it(tmp_path):
    """What Jupyter's Run All and `jupyter nbconvert --execute` do: every cell in order, with
    no papermill; the parameters cell edited as the README says."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    edits = {"epochs": 1, "data_source": "synthetic", "train_subset": 200, "val_size": 20,
             "test_subset": 100, "batch_size": 50, "output_dir": str(tmp_path / "mine")}
    cell, = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = "\n".join(f"{line.split('=')[0].strip()} = {edits[line.split('=')[0].strip()]!r}"
                            if line.split("=")[0].strip() in edits else line
                            for line in cell.source.splitlines())
    NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    with open(tmp_path / "mine" / "metrics.json") as file:
        metrics = json.load(file)
    assert metrics["epochs_completed"] == 1 and metrics["test_images"] == 100


def test_a_rendering_keeps_the_outputs_and_drops_the_injected_cell(smoke_run, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("render", os.path.join(ROOT, "scripts", "render_notebook.py"))
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    _, executed, _ = smoke_run
    with open(executed) as file:
        executed = json.load(file)
    with open(NOTEBOOK) as file:
        template = json.load(file)
    rendered = render.without_injected_parameters(executed, template)
    assert [c["source"] for c in rendered["cells"]] == [c["source"] for c in template["cells"]]
    assert sum(len(c.get("outputs", [])) for c in rendered["cells"]) >= 10
    assert "input_path" not in rendered["metadata"]["papermill"]
    template["cells"][2]["source"] = ["changed since"]
    with pytest.raises(SystemExit, match="another version of the notebook"):
        render.without_injected_parameters(executed, template)


def test_the_committed_notebook_shows_a_real_run_without_errors_or_local_paths():
    with open(NOTEBOOK) as file:
        text = file.read()
    notebook = json.loads(text)
    outputs = [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert outputs and not any(o["output_type"] == "error" for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6
    shown = stream_text(NOTEBOOK) + json.dumps([o.get("data", {}).get("text/markdown", "")
                                                for o in outputs])
    assert "resnet: 4,697,162 trainable parameters" in shown
    assert "Training history, recorded by" in shown or "epoch  75/75" in shown
    assert "(95 % interval" in shown and "n = 1,000" in shown
    for local in ("/tmp/", "/work/", "/root/", "/home/", "/Users/"):
        assert local not in text, local
    assert len(text) < 3_000_000  # GitHub renders notebooks up to a few MB


def test_the_committed_notebook_shows_the_network_and_the_loop_as_they_are_in_helpers():
    """Its two source listings are outputs of the run that rendered it: they must not drift
    from the code a reader runs (render the notebook again when they do)."""
    from helpers import stages
    from helpers.model import ARCHITECTURES
    with open(NOTEBOOK) as file:
        notebook = json.load(file)
    shown = ["".join(o["data"]["text/markdown"]) for c in notebook["cells"] if c["cell_type"] == "code"
             for o in c["outputs"] if "text/markdown" in o.get("data", {})]
    listing = "```python\n{}\n```".format
    assert any(listing(stages.model_source(name)) in shown for name in ARCHITECTURES)
    assert listing(stages.training_source()) in shown


def test_a_notebook_saved_by_nbconvert_shows_its_progress_bar_finished(tmp_path):
    """nbconvert executes without a browser; the bar it saves is the last one drawn. (The bar
    is asked for: progress='auto' draws lines instead where CI is set or papermill started it.)"""
    nbformat = pytest.importorskip("nbformat")
    training = (f"import sys; sys.path.insert(0, {ROOT!r})\n"
                "from helpers import stages\n"
                "from helpers.settings import make_config\n"
                "run = stages.start(make_config(data_source='synthetic', train_subset=40, "
                "val_size=0, test_subset=20, batch_size=8, epochs=2, progress='bar', "
                f"output_dir={str(tmp_path / 'out')!r}))\n"
                "data = stages.load(run)\n"
                "result = stages.train(run, data, stages.build_network(run))")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(training)])
    nbformat.write(notebook, str(tmp_path / "train.ipynb"))
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                    "--output", "executed.ipynb", str(tmp_path / "train.ipynb")],
                   check=True, capture_output=True, timeout=300)
    outputs = nbformat.read(str(tmp_path / "executed.ipynb"), as_version=4).cells[0].outputs
    bars = [o["data"]["text/plain"] for o in outputs if o["output_type"] == "display_data"]
    assert len(bars) == 1 and bars[0].startswith("epoch 2/2: 100%") and "5/5" in bars[0]


def test_papermill_reads_every_line_of_the_parameters_cell():
    """papermill parses the cell to know the parameters' names and types (and warns, once per
    run, about a line it cannot read, e.g. one with '=' in its comment)."""
    from helpers.settings import PARAMETER_NAMES

    assert set(papermill.inspect_notebook(NOTEBOOK)) == set(PARAMETER_NAMES)
