"""metrics.json records the commit of the code, or why it cannot."""
import subprocess

import pytest

from helpers import report


@pytest.fixture
def no_commit_variable(monkeypatch):
    monkeypatch.delenv(report.COMMIT_VARIABLE, raising=False)


def test_a_copy_without_git_records_no_commit_and_says_why(tmp_path, no_commit_variable):
    commit, note = report.commit_and_reason(str(tmp_path))
    assert commit is None
    assert note == f"this copy of the code has no .git folder; set {report.COMMIT_VARIABLE} to record it"


def test_a_machine_without_git_says_so(monkeypatch, no_commit_variable):
    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", missing)
    assert report.commit_and_reason() == (None, "git is not installed; set "
                                                f"{report.COMMIT_VARIABLE} to record it")


def test_a_repository_of_another_user_says_how_git_can_be_told_to_allow_it(monkeypatch, no_commit_variable):
    refused = subprocess.CompletedProcess([], 128, "", "fatal: detected dubious ownership in "
                                          "repository at '/srv/repo'\nTo add an exception ...")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: refused)
    commit, note = report.commit_and_reason()
    assert commit is None and "another user owns it" in note and "safe.directory" in note


def test_the_commit_variable_names_the_commit_where_git_cannot(tmp_path, monkeypatch):
    monkeypatch.setenv(report.COMMIT_VARIABLE, "3bb1968")
    commit, note = report.commit_and_reason(str(tmp_path))
    assert commit == "3bb1968" and note.endswith(f"the commit is as {report.COMMIT_VARIABLE} gives it")


def test_inside_the_repository_git_tells_the_commit_and_there_is_no_note(no_commit_variable):
    commit, note = report.commit_and_reason()
    if commit is None:
        pytest.skip(f"this copy cannot tell its commit: {note}")
    assert len(commit.split("+")[0]) == 40 and note is None


def test_the_summary_says_which_epoch_best_pt_holds_and_which_network_is_tested():
    metrics = {"best_val_epoch": 2, "tested_epoch": 3}
    assert report.best_words(metrics) == (", epoch 2 (its weights are best.pt; the test measures "
                                          "the network of the last epoch, 3, as the report did)")
    assert "the last (its weights are best.pt and model.pt)" in report.best_words(
        {"best_val_epoch": 3, "tested_epoch": 3})
    assert report.best_words({"best_val_epoch": None, "tested_epoch": None}) == ""
    history = [{"epoch": e, "val_accuracy": v} for e, v in ((1, 10.0), (2, 17.0), (3, 16.0), (4, 17.0))]
    assert report.best_epoch(history) == 2  # the first of a tie, as best.pt keeps it


def test_error_analysis_says_what_this_runs_confusions_show_and_nothing_else():
    import numpy as np

    classes = [f"class{c}" for c in range(10)]
    labels = np.repeat(np.arange(10), 10)
    three = np.where(labels < 5, 0, np.where(labels < 8, 3, 5))  # predicts 3 of the 10 classes
    said = report.confusions(labels, three, classes)
    assert said.startswith("This network predicted only 3 of the 10 classes (class0, class3, class5)")
    assert "look-alike" not in said and "cat" not in said
    predicted = labels.copy()
    predicted[:4] = 1        # four of class0 taken for class1
    predicted[50:52] = 7     # two of class5 taken for class7
    said = report.confusions(labels, predicted, classes)
    assert said == ("Its most frequent confusions (6 mistakes in all): class0 taken for class1 "
                    "4 times; class5 taken for class7 2 times.")
    assert report.confusions(labels, labels, classes) == "It made no mistakes on these images."


def test_the_heading_of_a_resumed_run_names_the_epochs_left_to_train():
    from helpers.settings import make_config

    config = make_config(epochs=3, resume=True, data_source="synthetic")
    said = {after: str(report.heading(config, "reference", after, [])) for after in (1, 2, 3)}
    assert "for epochs 2 to 3 (resumed)" in said[1]
    assert "for epoch 3 (resumed)" in said[2]
    assert "for no more epochs (resumed: its checkpoint holds all 3)" in said[3]
