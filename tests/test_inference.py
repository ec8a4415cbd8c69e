import os
import pickle

import numpy as np
import pytest
import torch

from torch import nn

from helpers.inference import (SubmissionError, load_kaggle_test, predict, safe_load_pickle,
                               write_submission)
from helpers.model import ResNet
from helpers.recipes import NO_TTA, TestTimeAugmentation


def tiny_network():
    torch.manual_seed(0)
    return ResNet(blocks=(1,), widths=(8,), strides=(1,), stem_width=8)


def write_pickle(path, content, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=protocol)
    return str(path)


def test_predict_returns_one_label_per_image_in_eval_mode():
    network = tiny_network().train()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    labels = predict(network, images, batch_size=2, tta=NO_TTA)
    assert labels.shape == (5,) and labels.dtype.kind == "i" and not network.training
    assert np.array_equal(labels, predict(network, images, batch_size=5, tta=NO_TTA))


def test_predict_rejects_images_that_are_not_uint8_nhwc():
    with pytest.raises(ValueError, match="uint8 images of shape"):
        predict(tiny_network(), np.zeros((2, 3, 32, 32), np.uint8), tta=NO_TTA)


def test_predict_with_a_bare_network_must_be_told_its_test_time_augmentation():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"needs tta=.*load_predictor\('model.pt'\)"):
        predict(tiny_network(), images)


class LeftOrRight(nn.Module):
    """Class 0 if the left half of the image is brighter, class 1 if the right half is: its
    mirror answers the other way, so flip test-time augmentation ties the two (class 0)."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # predict_logits reads the device from it

    def forward(self, x):
        left, right = x[..., :16].mean((1, 2, 3)), x[..., 16:].mean((1, 2, 3))
        rest = torch.full((len(x), 8), -1e9)
        return torch.cat([left[:, None], right[:, None], rest], 1)


def right_bright_images(count=6):
    images = np.zeros((count, 32, 32, 3), np.uint8)
    images[:, :, 16:] = 200
    return images


def test_a_weights_file_predicts_with_the_test_time_augmentation_it_records(tmp_path):
    from helpers.files import save_weights
    from helpers.inference import load_predictor

    path = str(tmp_path / "model.pt")
    network = ResNet()
    save_weights(path, network, TestTimeAugmentation(flip=True))
    model = load_predictor(path)
    assert model.test_time_augmentation == "flip"
    save_weights(path, network)  # a file from before model.pt recorded it
    assert load_predictor(path).test_time_augmentation == "none"


def test_a_weights_file_without_a_record_uses_what_the_metrics_beside_it_say(tmp_path):
    import json

    from helpers.files import read_weights, save_weights

    path = str(tmp_path / "model.pt")
    save_weights(path, ResNet())
    assert read_weights(path)[1] is None
    with open(tmp_path / "metrics.json", "w") as file:
        json.dump({"recipe_settings": {"tta_flip": True, "tta_translate": 2}}, file)
    assert read_weights(path)[1] == TestTimeAugmentation(flip=True, translate=2)


def test_the_submission_is_labelled_the_way_the_test_accuracy_was_measured(tmp_path):
    from helpers import stages
    from helpers.data import CifarData, ImageSet
    from helpers.distributed import DistributedContext
    from helpers.settings import make_config, recipe_of
    from helpers.training import TrainingResult

    images = right_bright_images()
    kaggle = write_pickle(tmp_path / "test.pkl", {b"data": images, b"ids": list(range(6))})
    config = make_config(recipe="improved", data_source="synthetic", kaggle_test_pkl=kaggle,
                         output_dir=str(tmp_path))
    run = stages.Run(config, recipe_of(config), torch.device("cpu"), DistributedContext(),
                     tta=(TestTimeAugmentation(flip=True),))
    data = CifarData(ImageSet(images[:0], np.zeros(0, np.int64)), ImageSet(images[:0], np.zeros(0, np.int64)),
                     ImageSet(images, np.ones(6, np.int64)), "synthetic")
    result = run.result = TrainingResult(LeftOrRight())
    measured = stages.evaluate_test(run, data, result)
    assert "with the test-time augmentation of the test accuracy (flip)" in stages.submit(run, result)
    with open(tmp_path / "submission.csv") as file:
        submitted = [int(row.split(",")[1]) for row in file.read().splitlines()[1:]]
    assert submitted == list(measured.predicted) == [0] * 6  # without the flip: 1 each
    assert list(predict(LeftOrRight(), images, tta=NO_TTA)) == [1] * 6


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


def test_the_readmes_python_interface_runs_and_names_the_classes():
    """The README's lines, as a user copies them, with images of their own."""
    import re

    from conftest import ROOT
    from helpers.data import CIFAR10_CLASSES

    with open(os.path.join(ROOT, "README.md")) as file:
        readme = file.read()
    block = readme.split("**In Python**", 1)[1].split("\n\n")[1]
    code = "\n".join(line[4:] for line in block.splitlines())
    assert "CIFAR10_CLASSES" in code and re.search(r"load_predictor\(", code)
    namespace = {"images": np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)}
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # the README's paths are from the repository
        exec(code, namespace)
    finally:
        os.chdir(cwd)
    assert len(namespace["names"]) == 3 and set(namespace["names"]) <= set(CIFAR10_CLASSES)
