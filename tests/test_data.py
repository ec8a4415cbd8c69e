import os

import numpy as np
import pytest

from conftest import write_image_folder
from helpers.settings import make_config
from helpers.data import (CIFAR10_CLASSES, DataError, ImageSet, balanced_subset_indices,
                          check_integrity, load_data, make_synthetic, stratified_split, summarize)


def folder_config(data_dir, **overrides):
    return make_config(**{"data_source": "folder", "data_dir": data_dir, "val_size": 10, **overrides})


def test_synthetic_images_are_uint8_rgb_with_all_ten_classes():
    train, test = make_synthetic()
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (32, 32, 3)
    assert set(train.labels) == set(test.labels) == set(range(10))


def test_synthetic_classes_are_separable_by_mean_colour():
    train, test = make_synthetic()
    centroids = np.stack([train.images[train.labels == c].mean((0, 1, 2)) for c in range(10)])
    distances = ((test.images.mean((1, 2))[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert np.mean(distances.argmin(1) == test.labels) > 0.9


def test_subset_is_class_balanced_and_the_same_for_every_seed():
    labels = np.repeat(np.arange(10), 100)
    subset = balanced_subset_indices(labels, 200)
    assert np.all(np.bincount(labels[subset], minlength=10) == 20)
    for seed in (0, 1):
        config = make_config(data_source="synthetic", train_subset=200, val_size=0, seed=seed)
        assert len(load_data(config).train) == 200
    first = load_data(make_config(data_source="synthetic", train_subset=200, val_size=0, seed=0))
    second = load_data(make_config(data_source="synthetic", train_subset=200, val_size=0, seed=7))
    assert np.array_equal(first.train.images, second.train.images)


def test_subset_is_the_first_images_of_each_class_in_the_source_order():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 100))
    subset = balanced_subset_indices(labels, 30)
    expected = np.sort(np.concatenate([np.flatnonzero(labels == c)[:3] for c in range(10)]))
    assert np.array_equal(subset, expected)


def test_a_subset_not_a_multiple_of_ten_gives_the_first_classes_one_more():
    labels = np.repeat(np.arange(10), 100)
    counts = np.bincount(labels[balanced_subset_indices(labels, 23)], minlength=10)
    assert counts.tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]


def test_a_folder_subset_is_the_first_files_of_each_class_and_is_named_so(image_folder):
    whole = load_data(folder_config(image_folder, val_size=0))
    subset = load_data(folder_config(image_folder, val_size=0, test_subset=20))
    first_two = np.concatenate([np.flatnonzero(whole.test.labels == c)[:2] for c in range(10)])
    assert np.array_equal(subset.test.images, whole.test.images[np.sort(first_two)])
    assert subset.test_name.endswith(", the first 2 of each class (n = 20)")
    uneven = load_data(folder_config(image_folder, val_size=0, test_subset=25))
    assert uneven.origins["test"].name.endswith(", the first 2–3 of each class")


def test_validation_split_is_disjoint_stratified_and_deterministic_in_seed():
    labels = np.repeat(np.arange(10), 50)
    train, val = stratified_split(labels, 100, seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 500
    assert np.all(np.bincount(labels[val], minlength=10) == 10)
    assert np.array_equal(val, stratified_split(labels, 100, seed=3)[1])
    assert not np.array_equal(val, stratified_split(labels, 100, seed=4)[1])


def test_val_size_zero_means_no_validation_images():
    data = load_data(make_config(data_source="synthetic", train_subset=100, val_size=0))
    assert len(data.val) == 0 and len(data.train) == 100


def test_folder_source_reads_png_and_jpg_in_cifar_label_order(tmp_path):
    root = write_image_folder(tmp_path / "png", per_class=3, extension="png")
    data = load_data(folder_config(root, val_size=0))
    assert len(data.train) == 30 and len(data.test) == 30
    # the test fixture writes each image's class index into its first pixel
    assert np.array_equal(data.train.images[:, 0, 0, 0], data.train.labels)
    jpg = write_image_folder(tmp_path / "jpg", per_class=2, extension="jpg")
    assert len(load_data(folder_config(jpg, val_size=0)).test) == 20


def test_folder_subset_decodes_a_balanced_subset(image_folder):
    data = load_data(folder_config(image_folder, train_subset=20, val_size=0))
    assert np.all(np.bincount(data.train.labels, minlength=10) == 2)


@pytest.mark.parametrize("breakage, message", [
    (lambda root: root + "-missing", "does not exist"),
    (lambda root: _emptied(root), "is empty"),
    (lambda root: _removed(root, "test"), "test"),
    (lambda root: _removed(root, "train/cat"), "missing class folder"),
    (lambda root: _added(root, "train/unicorn"), "unicorn"),
    (lambda root: _emptied(os.path.join(root, "train", "dog")) and root, "holds no"),
])
def test_broken_image_folders_are_named(image_folder, breakage, message):
    with pytest.raises(DataError, match=message):
        load_data(folder_config(breakage(image_folder)))


def test_a_missing_data_dir_says_where_it_was_looked_for_and_how_to_set_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:
        load_data(folder_config("cifar10"))
    assert f"data_dir='cifar10' does not exist (looked for at {tmp_path / 'cifar10'})" in str(error.value)
    assert "give the folder that holds them, `data_dir='FOLDER'`, or download the official " \
        "CIFAR-10 instead with `data_source='torchvision'`" in str(error.value)


def test_class_folders_named_in_capitals_are_refused_with_the_renames_that_fix_them(image_folder):
    os.rename(os.path.join(image_folder, "train", "airplane"), os.path.join(image_folder, "train", "Airplane"))
    with pytest.raises(DataError, match="in lower case: rename 'Airplane' to 'airplane'"):
        load_data(folder_config(image_folder))


def test_unreadable_image_is_named(image_folder):
    bad = os.path.join(image_folder, "train", "bird", "0001.png")
    with open(bad, "wb") as file:
        file.write(b"not an image")
    with pytest.raises(DataError, match="0001.png"):
        load_data(folder_config(image_folder))


def test_image_that_is_not_32x32_rgb_is_named(tmp_path):
    from PIL import Image

    root = write_image_folder(tmp_path / "images", per_class=2)
    Image.new("L", (32, 32)).save(os.path.join(root, "test", "frog", "0000.png"))
    with pytest.raises(DataError, match="frog.*0000.png.*32x32 RGB"):
        load_data(folder_config(root, val_size=0))
    Image.new("RGB", (64, 64)).save(os.path.join(root, "test", "frog", "0000.png"))
    with pytest.raises(DataError, match="64x64"):
        load_data(folder_config(root, val_size=0))


@pytest.mark.parametrize("overrides, message", [
    ({"val_size": 60}, "val_size=60"),
    ({"train_subset": 20, "val_size": 20}, "val_size=20"),
    ({"train_subset": 1000}, "train_subset=1000"),
])
def test_sizes_out_of_range_for_the_data_are_named(image_folder, overrides, message):
    with pytest.raises(DataError, match=message):
        load_data(folder_config(image_folder, **overrides))


def test_torchvision_offline_says_where_to_put_the_archive(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(DataError, match="cifar-10-python.tar.gz.*data_source='folder'"):
        load_data(make_config(data_dir=str(tmp_path)))


def test_a_stalled_download_stops_with_the_offline_message_and_leaves_no_partial_archive(
        monkeypatch, tmp_path):
    import socket
    import time

    from torchvision.datasets import CIFAR10

    from helpers import data

    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{silent.getsockname()[1]}/c.tar.gz")
    monkeypatch.setattr(data, "DOWNLOAD_STALL_S", 0.5)
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    started = time.monotonic()
    try:
        with pytest.raises(DataError, match=r"no answer for 0.5 s.*Offline, put cifar-10-python"):
            load_data(make_config(data_dir=str(tmp_path)))
    finally:
        silent.close()
    assert time.monotonic() - started < 30
    assert not os.path.exists(tmp_path / CIFAR10.filename)
    assert socket.getdefaulttimeout() is None  # the limit applied to the download only


def test_impossible_labels_and_shapes_stop_the_run():
    with pytest.raises(DataError, match="labels"):
        check_integrity("train", ImageSet(np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 10])))
    with pytest.raises(DataError, match="uint8"):
        check_integrity("test", ImageSet(np.zeros((2, 28, 28, 3), np.uint8), np.array([0, 1])))


def test_summary_counts_every_split_and_flags_synthetic_data():
    data = load_data(make_config(data_source="synthetic", train_subset=100, val_size=20))
    text = summarize(data)
    assert "SYNTHETIC" in text and "total" in text and all(c in text for c in CIFAR10_CLASSES)


def _emptied(folder):
    import shutil

    shutil.rmtree(folder)
    os.makedirs(folder)
    return folder


def _removed(root, relative):
    import shutil

    shutil.rmtree(os.path.join(root, relative))
    return root


def _added(root, relative):
    os.makedirs(os.path.join(root, relative))
    return root


def test_test_subset_is_class_balanced_for_folders_and_synthetic_data(image_folder):
    folder = load_data(folder_config(image_folder, test_subset=20, val_size=0))
    assert np.all(np.bincount(folder.test.labels, minlength=10) == 2)
    synthetic = load_data(make_config(data_source="synthetic", test_subset=30, val_size=0))
    assert np.all(np.bincount(synthetic.test.labels, minlength=10) == 3)
    with pytest.raises(DataError, match="test_subset=100 must be between 10 and the 60 test images"):
        load_data(folder_config(image_folder, test_subset=100))


def test_a_folder_is_fingerprinted_once_and_later_runs_decode_only_the_images_they_use(
        image_folder, monkeypatch):
    from helpers import data as data_module

    before = sorted(os.listdir(image_folder))
    first = load_data(folder_config(image_folder, val_size=0))
    assert sorted(os.listdir(image_folder)) == before  # nothing written into the data folder
    assert os.path.isfile(data_module.fingerprint_cache())
    assert any("decoded all 60 files to fingerprint them (remembered in" in note for note in first.notes)
    decoded = []
    real = data_module.read_images
    monkeypatch.setattr(data_module, "read_images", lambda paths, labels: decoded.append(len(paths))
                        or real(paths, labels))
    again = load_data(folder_config(image_folder, val_size=0, train_subset=20))
    assert decoded == [20, 60]  # the 20 training images of the subset, every test image
    assert np.array_equal(again.test.images, first.test.images)
    assert again.origins["train"].fingerprints == first.origins["train"].fingerprints
    assert np.all(np.bincount(again.train.labels, minlength=10) == 2)
    assert again.notes == ("train: decoded 20 files", "test: decoded 60 files")


def test_a_changed_image_is_read_and_fingerprinted_anew(image_folder):
    from PIL import Image

    before = load_data(folder_config(image_folder, val_size=0))
    changed = os.path.join(image_folder, "test", "ship", "0002.png")
    Image.fromarray(np.full((32, 32, 3), 77, np.uint8)).save(changed)
    data = load_data(folder_config(image_folder, val_size=0))
    ship = np.flatnonzero(data.test.labels == CIFAR10_CLASSES.index("ship"))[2]
    assert np.all(data.test.images[ship] == 77)
    assert data.origins["test"].fingerprints != before.origins["test"].fingerprints


def test_without_a_writable_cache_folder_the_images_still_load(image_folder, monkeypatch):
    from helpers import data as data_module

    def read_only(path, text):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data_module, "atomic_write_text", read_only)
    data = load_data(folder_config(image_folder, val_size=0))
    assert len(data.train) == 60 and not os.path.exists(data_module.fingerprint_cache())
    assert "not remembered: [Errno 13] Permission denied" in data.notes[0]


# --- a damaged download -------------------------------------------------------------------------

def test_a_partial_archive_is_named_as_damaged_with_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise AssertionError("must not try to download: the archive is there, damaged")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 5000)
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz' is damaged or incomplete "
                                        r"\(5,002 of 170,498,071 bytes.*delete it and run again"):
        load_data(make_config(data_dir=str(tmp_path)))


def test_a_damaged_extracted_folder_is_named_with_the_damaged_files(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.CIFAR10", lambda *a, **k: None)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"half a batch")
    with pytest.raises(DataError, match=r"cifar-10-batches-py' is damaged \(data_batch_1, "
                                        r"data_batch_2.* delete the folder and run again"):
        load_data(make_config(data_dir=str(tmp_path)))


# --- which images: fingerprints and names -------------------------------------------------------

def _known_as(monkeypatch, data_dir, split, kind, family="CIFAR-10", part="test images 0–999"):
    """Make `data_dir`'s split a known set, recognised by its `kind` fingerprint."""
    from helpers import data as provenance
    from helpers.data import load_folder

    images, origin, _ = load_folder(data_dir, split)
    fingerprint = origin.fingerprints[kind]
    known = provenance.KnownSet(family, part, split, kind, fingerprint, len(images), "this test")
    monkeypatch.setattr(provenance, "KNOWN_SETS", (known,))


def test_a_known_folder_is_named_whatever_its_file_names_and_order(image_folder, monkeypatch):
    _known_as(monkeypatch, image_folder, "test", "pixels")
    cat = os.path.join(image_folder, "test", "cat")
    for name in sorted(os.listdir(cat)):
        os.rename(os.path.join(cat, name), os.path.join(cat, "x" + name))
    data = load_data(folder_config(image_folder, model_weights="a.pt", val_size=5000))
    assert data.origins["test"].known and data.origins["test"].name == "CIFAR-10 test images 0–999"
    assert data.description == "CIFAR-10 test images 0–999 (n = 60)"


def test_one_changed_pixel_changes_the_name(image_folder, monkeypatch):
    from PIL import Image

    _known_as(monkeypatch, image_folder, "test", "pixels")
    path = os.path.join(image_folder, "test", "ship", "0002.png")
    pixels = np.array(Image.open(path))
    pixels[5, 5, 1] ^= 1
    Image.fromarray(pixels).save(path)
    origin = load_data(folder_config(image_folder, model_weights="a.pt", val_size=5000)).origins["test"]
    assert not origin.known and origin.name == "image folders (not a known copy of CIFAR-10)"


def test_a_lossy_copy_is_known_by_its_files_not_its_decoded_pixels(tmp_path, monkeypatch):
    from PIL import Image

    root = write_image_folder(tmp_path / "jpg", per_class=2, extension="jpg")
    _known_as(monkeypatch, root, "train", "files", "CIFAR-10 (JPEG mirror)", "training images")
    data = load_data(folder_config(root, val_size=0))
    assert data.origins["train"].name == "CIFAR-10 (JPEG mirror) training images"
    path = os.path.join(root, "train", "dog", "0001.jpg")
    Image.open(path).convert("RGB").save(path, quality=95)  # the same image, other bytes
    assert not load_data(folder_config(root, val_size=0)).origins["train"].known


def test_the_official_sets_and_the_mirror_have_one_fingerprint_each_with_its_source():
    from helpers.data import KNOWN_SETS

    assert len({known.fingerprint for known in KNOWN_SETS}) == len(KNOWN_SETS) == 5
    assert all(len(known.fingerprint) == 64 and known.source for known in KNOWN_SETS)
    assert {known.kind for known in KNOWN_SETS if "mirror" in known.family} == {"files"}


def test_synthetic_data_names_itself_in_the_data_entry():
    data = load_data(make_config(data_source="synthetic", train_subset=100, val_size=20))
    entry = data.to_dict()
    assert entry["description"] == "SYNTHETIC images (not CIFAR-10): training and test images (n = 500)"
    assert entry["train"]["subset"] == 100 and entry["images"] == {"train": 80, "val": 20, "test": 500}
    assert len(entry["test"]["fingerprints"]["pixels"]) == 64


def test_a_class_balanced_subset_larger_than_a_class_allows_is_refused(image_folder):
    dog = os.path.join(image_folder, "test", "dog")
    for name in sorted(os.listdir(dog))[2:]:          # dog keeps 2 test images of 6
        os.remove(os.path.join(dog, name))
    with pytest.raises(DataError, match=r"test_subset=56 asks for 6 images of class 'dog', which "
                                        r"has only 2 here: a class-balanced subset can have at most "
                                        r"25 images; or use test_subset=None for all 56"):
        load_data(folder_config(image_folder, val_size=0, test_subset=56))
    assert np.all(np.bincount(load_data(folder_config(image_folder, val_size=0, test_subset=20))
                              .test.labels, minlength=10) == 2)


def test_a_file_name_that_is_not_valid_utf8_is_read_as_the_file_system_gives_it(image_folder):
    import shutil

    cat = os.path.join(image_folder, "train", "cat")
    first = os.path.join(cat, sorted(os.listdir(cat))[0])
    # Latin-1 "café.png" from an old archive: byte 0xE9 alone is not UTF-8.
    shutil.copy(first, os.path.join(os.fsencode(cat), b"caf\xe9.png"))
    data = load_data(folder_config(image_folder, val_size=0))
    assert np.bincount(data.train.labels)[CIFAR10_CLASSES.index("cat")] == 7


def test_usable_cpus_are_those_the_process_may_run_on_not_the_hosts(monkeypatch):
    from helpers import env as data

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # taskset -c 3
    monkeypatch.setattr(data, "cgroup_cpu_quota", lambda: None)
    assert data.usable_cpus() == 1


def test_a_container_cpu_quota_caps_the_usable_cpus(monkeypatch, tmp_path):
    from helpers import env as data

    (tmp_path / "cpu.max").write_text("150000 100000\n")  # docker run --cpus 1.5
    assert data.cgroup_cpu_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert data.cgroup_cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    os.makedirs(tmp_path / "cpu")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1, --cpus 1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert data.cgroup_cpu_quota(str(tmp_path)) == 1.0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(data, "cgroup_cpu_quota", lambda: 1.5)
    assert data.usable_cpus() == 2


def test_dataloader_workers_default_to_the_usable_cpus(monkeypatch, tmp_path):
    from helpers import stages, training
    from test_training import tiny_config, train_tiny

    monkeypatch.setattr(stages, "usable_cpus", lambda: 1)
    chosen = {}
    monkeypatch.setattr(training, "dataloader_batches",
                        lambda *args, **kwargs: chosen.update(kwargs) or [])
    train_tiny(tiny_config(tmp_path, pipeline="dataloader", num_workers=None, epochs=1))
    assert chosen["num_workers"] == 1


def test_a_data_dir_one_folder_too_deep_names_the_folder_above(image_folder):
    with pytest.raises(DataError, match=r"train/train' is missing.*data_dir names the folder that holds "
                                        r"train/ and test/: `data_dir=.*images'`\?"):
        load_data(folder_config(os.path.join(image_folder, "train"), val_size=0))
