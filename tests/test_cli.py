import subprocess
import sys

from conftest import ROOT


def run_cli(*arguments):
    return subprocess.run([sys.executable, "-m", "helpers.cli", *arguments], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_bad_option_value_exits_with_the_reason_not_a_traceback():
    result = run_cli("--batch-size", "-5")
    assert result.returncode == 2
    assert "batch_size=-5" in result.stderr and "Traceback" not in result.stderr


def test_every_notebook_parameter_is_an_option():
    from helpers.settings import PARAMETER_NAMES

    help_text = run_cli("--help").stdout
    assert all(f"--{name.replace('_', '-')}" in help_text for name in PARAMETER_NAMES)


def test_a_misspelt_option_is_named_with_the_closest_known_one():
    result = run_cli("--epoch", "1")
    assert result.returncode == 2 and "unknown parameter 'epoch' — did you mean 'epochs'?" in result.stderr


def test_help_says_what_each_option_does_and_on_off_options_need_no_value():
    from helpers.cli import parse_args

    help_text = run_cli("--help").stdout
    assert "training epochs (default: 75)" in help_text and "--resume [True|False]" in help_text
    assert parse_args(["--test-each-epoch", "--epochs", "3"]).test_each_epoch is True
    assert parse_args(["--resume", "False"]).resume is False


def test_a_run_ends_by_naming_the_folders_of_its_files_and_figures(tmp_path):
    result = run_cli("--data_source", "synthetic", "--train_subset", "40", "--val_size", "0",
                     "--test_subset", "20", "--epochs", "1", "--batch_size", "20", "--progress",
                     "none", "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-2:] == [
        f"files in {tmp_path / 'out'}: metrics.json, model.pt, checkpoint.pt, best.pt",
        f"figures in {tmp_path / 'out' / 'figures'}: augmented_samples.png, training_curves.png, "
        "lr_schedule.png, confusion_matrix.png, per_class_accuracy.png, reliability_diagram.png, "
        "misclassified.png"]


def test_a_missing_data_dir_is_told_the_command_line_options_that_fix_it(tmp_path):
    result = run_cli("--data_source", "folder", "--data_dir", str(tmp_path / "cifar10"),
                     "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "`--data_dir FOLDER`" in result.stderr and "`--data_source torchvision`" in result.stderr


def test_the_closing_list_names_the_int8_weights_of_a_quantized_run(tmp_path):
    from types import SimpleNamespace

    from helpers.cli import where_written

    for name in ("metrics.json", "model.pt", "model-int8.pt"):
        (tmp_path / name).write_bytes(b"")
    config = SimpleNamespace(evaluate_only=False, kaggle_test_pkl=None, quantize="int8",
                             output_dir=str(tmp_path), figures_folder=str(tmp_path / "figures"))
    run = SimpleNamespace(config=config, path=lambda name: str(tmp_path / name))
    assert where_written(run, []) == f"files in {tmp_path}: metrics.json, model.pt, model-int8.pt"
