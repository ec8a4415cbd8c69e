import os
import pickle

import numpy as np
import pytest
import torch

from helpers.inference import (SubmissionError, load_kaggle_test, predict, safe_load_pickle,
                               write_submission)
from helpers.model import build_resnet


def tiny_network():
    torch.manual_seed(0)
    return build_resnet(blocks=(1,), widths=(8,), strides=(1,), stem_width=8)


def write_pickle(path, content, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=protocol)
    return str(path)


def test_predict_returns_one_label_per_image_in_eval_mode():
    network = tiny_network().train()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    labels = predict(network, images, batch_size=2)
    assert labels.shape == (5,) and labels.dtype.kind == "i" and not network.training
    assert np.array_equal(labels, predict(network, images, batch_size=5))


def test_predict_rejects_images_that_are_not_uint8_nhwc():
    with pytest.raises(ValueError, match="uint8 images of shape"):
        predict(tiny_network(), np.zeros((2, 3, 32, 32), np.uint8))


@pytest.mark.parametrize("layout", ["nhwc", "rows"])
def test_kaggle_pickle_in_both_layouts_gives_the_same_images(tmp_path, layout):
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    data = images if layout == "nhwc" else images.transpose(0, 3, 1, 2).reshape(4, 3072)
    path = write_pickle(tmp_path / "test.pkl", {b"data": data, b"ids": [10, 11, 12, 13]}, protocol=2)
    loaded, ids = load_kaggle_test(path)
    assert np.array_equal(loaded, images) and ids == [10, 11, 12, 13]


def test_submission_csv_has_header_and_one_row_per_id_in_order(tmp_path):
    path = str(tmp_path / "submission.csv")
    write_submission(path, [7, 3, 5], np.array([1, 9, 0]))
    with open(path) as file:
        assert file.read() == "ID,Labels\n7,1\n3,9\n5,0\n"


@pytest.mark.parametrize("content, message", [
    ({b"ids": [1]}, "no 'data'"),
    ({b"data": np.zeros((2, 32, 32, 3), np.uint8)}, "no 'ids'"),
    ({b"data": np.zeros((2, 32, 32, 3), np.float32), b"ids": [1, 2]}, "dtype float32"),
    ({b"data": np.zeros((2, 28, 28, 3), np.uint8), b"ids": [1, 2]}, "shape"),
    ({b"data": np.zeros((2, 32, 32, 3), np.uint8), b"ids": [1]}, "2 images but 1 ids"),
    ({b"data": np.zeros((2, 32, 32, 3), np.uint8), b"ids": [4, 4]}, "not unique"),
    ([1, 2, 3], "holds a list"),
])
def test_malformed_kaggle_pickles_are_named(tmp_path, content, message):
    path = write_pickle(tmp_path / "test.pkl", content)
    with pytest.raises(SubmissionError, match=message):
        load_kaggle_test(path)


def test_missing_kaggle_pickle_is_named(tmp_path):
    with pytest.raises(SubmissionError, match="does not exist"):
        load_kaggle_test(str(tmp_path / "nope.pkl"))


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_never_runs_its_code(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle(tmp_path / "test.pkl", {b"data": Exploit(marker), b"ids": [1]})
    with pytest.raises(SubmissionError, match="refusing to load"):
        load_kaggle_test(path)
    assert not marker.exists()
    # the same file through plain pickle would have run it: the test's payload is real
    with open(path, "rb") as file:
        pickle.load(file)
    assert marker.exists()


def test_restricted_unpickler_reads_plain_containers_and_arrays(tmp_path):
    content = {"a": [1, 2.5, "x", b"y", (3, None)], "b": np.arange(3, dtype=np.int16)}
    loaded = safe_load_pickle(write_pickle(tmp_path / "ok.pkl", content))
    assert loaded["a"] == content["a"] and np.array_equal(loaded["b"], content["b"])


@pytest.mark.parametrize("ids", [
    [b"0", b"1", b"2"],                                   # Python 2's str, read as bytes
    np.array([b"0", b"1", b"2"]),                         # numpy's bytes dtype
    np.array(["0", "1", "2"]),
])
def test_ids_from_a_python2_pickle_become_text(tmp_path, ids):
    images = np.zeros((3, 3072), np.uint8)
    path = write_pickle(tmp_path / "test.pkl", {b"data": images, b"ids": ids}, protocol=2)
    _, loaded = load_kaggle_test(path)
    assert loaded == ["0", "1", "2"]
    write_submission(str(tmp_path / "submission.csv"), loaded, np.array([4, 5, 6]))
    assert (tmp_path / "submission.csv").read_text() == "ID,Labels\n0,4\n1,5\n2,6\n"


def test_ids_of_another_type_are_refused_naming_it(tmp_path):
    path = write_pickle(tmp_path / "test.pkl", {b"data": np.zeros((2, 3072), np.uint8),
                                                b"ids": [1.5, 2.5]})
    with pytest.raises(SubmissionError, match=r"holds a float \(1.5\); expected integers or text"):
        load_kaggle_test(path)
