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
