import os
import re

import pytest

from helpers.settings import ConfigError, RunConfig, config_differences, make_config


def test_defaults_are_the_reference_recipe():
    config = make_config()
    assert (config.epochs, config.batch_size, config.lr, config.momentum, config.weight_decay,
            config.milestones, config.gamma) == (75, 256, 0.1, 0.9, 1e-4, (30, 40, 60, 80), 0.1)
    assert (config.data_source, config.val_size, config.train_subset, config.recipe,
            config.pipeline) == ("torchvision", 5000, None, "reference", "fast")


def test_papermill_string_forms_are_accepted():
    config = make_config(milestones="[30, 60]", train_subset="None", resume="True", lr="0.05",
                         epochs="3", kaggle_test_pkl="None")
    assert config.milestones == (30, 60) and config.train_subset is None
    assert config.resume is True and config.lr == 0.05 and config.epochs == 3
    assert config.kaggle_test_pkl is None


def test_config_is_frozen():
    with pytest.raises(Exception):
        make_config().epochs = 3


@pytest.mark.parametrize("parameters, named", [
    ({"epochs": 0}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"batch_size": -5}, "batch_size"),
    ({"lr": 0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"gamma": 1.5}, "gamma"),
    ({"momentum": 1.0}, "momentum"),
    ({"milestones": "[40, 30]"}, "milestones"),
    ({"milestones": [30, 30]}, "milestones"),
    ({"milestones": "[3.5]"}, "milestones"),
    ({"milestones": "oops"}, "milestones"),
    ({"data_source": "bogus"}, "data_source"),
    ({"recipe": "magic"}, "recipe"),
    ({"pipeline": "slow"}, "pipeline"),
    ({"device": "tpu"}, "device"),
    ({"val_size": -1}, "val_size"),
    ({"train_subset": 5}, "train_subset"),
    ({"resume": "maybe"}, "resume"),
    ({"no_such_parameter": 1}, "no_such_parameter"),
])
def test_bad_values_name_the_parameter(parameters, named):
    with pytest.raises(ConfigError, match=named):
        make_config(**parameters)


def test_milestones_beyond_epochs_are_valid():
    assert make_config(epochs=75, milestones=[30, 40, 60, 80]).milestones[-1] == 80


def test_cuda_asked_for_but_absent_is_refused(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        make_config(device="cuda")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir_is_refused(tmp_path):
    from helpers.stages import check_writable

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="output_dir"):
        check_writable("output_dir", str(locked / "outputs"))


def test_output_dir_below_a_file_is_refused(tmp_path):
    from helpers.stages import check_writable

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="output_dir"):
        check_writable("output_dir", str(blocker / "outputs"))


def test_the_folders_made_to_check_writing_are_removed_and_those_there_before_stay(tmp_path):
    from helpers.stages import check_writable

    kept = tmp_path / "kept"
    (kept / "earlier").mkdir(parents=True)
    check_writable("figures_dir", str(kept / "run" / "figures"))
    assert sorted(os.listdir(kept)) == ["earlier"]  # no empty run/figures left if the run stops
    check_writable("output_dir", str(kept / "earlier"))
    assert os.path.isdir(kept / "earlier")


def test_a_run_stopped_by_a_data_error_leaves_no_empty_output_folders(tmp_path):
    from helpers import stages
    from helpers.data import DataError

    run = stages.start(make_config(data_source="folder", data_dir=str(tmp_path / "no-data"),
                                   output_dir=str(tmp_path / "out"), progress="none"))
    with pytest.raises(DataError, match="does not exist"):
        stages.load(run)
    assert os.listdir(tmp_path) == []


def test_config_differences_ignore_epochs_but_list_run_changing_settings():
    saved = RunConfig().to_dict()
    assert config_differences(saved, make_config(epochs=100, output_dir="elsewhere")) == []
    differences = config_differences(saved, make_config(batch_size=128, seed=3))
    assert any("batch_size" in d for d in differences) and any("seed" in d for d in differences)


def test_recipe_overrides_change_one_ingredient_and_keep_the_rest():
    import dataclasses

    from helpers.settings import recipe_of

    shipped = recipe_of(make_config(recipe="improved"))
    # papermill's -p delivers the dict as a string
    changed = recipe_of(make_config(recipe="improved",
                                         recipe_overrides="{'cutout_size': 8, 'ema_decay': 0}"))
    assert changed.augmentation == dataclasses.replace(shipped.augmentation, cutout_size=8)
    assert changed.ema_decay == 0.0
    assert dataclasses.replace(changed, augmentation=shipped.augmentation, ema_decay=0.999) == shipped


@pytest.mark.parametrize("overrides, message", [
    ({"cutout": 8}, "unknown recipe_overrides setting 'cutout' — did you mean 'cutout_size'? "
                    "(`recipe_overrides={'cutout_size': 8}`)"),
    ({"bogus": 1}, "unknown recipe_overrides setting 'bogus' (known: lr, momentum,"),
    ({"cutout_size": 40}, "recipe_overrides['cutout_size']=40 must be in [0, 32]"),
    ({"label_smoothing": 1.0}, "must be in [0, 1)"),
    ({"schedule": "onecycle"}, "is not one of 'multistep', 'warmup_cosine', 'warmup_linear'"),
    ({"tta_flip": "maybe"}, "must be True or False"),
    ({"mixup_alpha": -0.2}, "recipe_overrides['mixup_alpha']=-0.2 must be in [0, 10]"),
    ({"cutmix_alpha": 11}, "recipe_overrides['cutmix_alpha']=11 must be in [0, 10]"),
    ({"tta_translate": 9}, "recipe_overrides['tta_translate']=9 must be in [0, 8]"),
    ({"distill_weight": 1.5}, "recipe_overrides['distill_weight']=1.5 must be in [0, 1]"),
    ({"distill_temperature": 0}, "recipe_overrides['distill_temperature']=0 must be in (0, 100]"),
    ("[1, 2]", "must be a dict of recipe settings"),
])
def test_bad_recipe_overrides_are_refused_before_any_work(tmp_path, overrides, message):
    from helpers import stages

    with pytest.raises(ConfigError) as error:
        stages.start(make_config(recipe="improved", recipe_overrides=overrides,
                                 output_dir=str(tmp_path), figures_dir=str(tmp_path)))
    assert message in str(error.value)


def test_every_recipe_setting_but_its_name_can_be_overridden():
    import dataclasses

    from helpers.recipes import TTA_SETTINGS, Augmentation, Recipe
    from helpers.settings import RECIPE_SETTINGS

    fields = {f.name for f in dataclasses.fields(Recipe)} | {f.name for f in dataclasses.fields(Augmentation)}
    assert set(RECIPE_SETTINGS) == fields - {"name", "augmentation", "tta"} | set(TTA_SETTINGS)


def test_a_misspelt_parameter_is_named_with_the_closest_known_one():
    with pytest.raises(ConfigError, match="unknown parameter 'epoch' — did you mean 'epochs'?"):
        make_config(epoch=1)


def test_papermill_injected_parameters_that_the_notebook_lacks_stop_the_run():
    from helpers.settings import config_from_namespace

    executed = ["", "import x", "epochs = 75\nseed = 0", '# Parameters\nepoch = 1\nseed = 2\n',
                "config = config_from_namespace(globals())"]
    with pytest.raises(ConfigError, match="unknown parameter 'epoch' — did you mean 'epochs'?"):
        config_from_namespace({"In": executed, "epochs": 75, "epoch": 1, "seed": 2})
    # Interactively (no injected cell before this one) other variables are nobody's business.
    assert config_from_namespace({"In": executed[:3] + ["config = ..."], "data": object(),
                                  "seed": 2}).seed == 2


@pytest.mark.parametrize("value, message", [
    ("ten", "epochs='ten' must be an integer"),
    ("3.5", "epochs=3.5 must be an integer"),
])
def test_a_non_integer_says_it_must_be_an_integer(value, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_config(epochs=value)


def test_weights_may_be_one_path_or_a_list():
    assert make_config(model_weights="a.pt").model_weights == ("a.pt",)
    assert make_config(model_weights="['a.pt', 'b.pt']").model_weights == ("a.pt", "b.pt")
    assert make_config(teacher_weights=["t.pt"]).teacher_weights == ("t.pt",)
    with pytest.raises(ConfigError, match="model_weights"):
        make_config(model_weights="[]")


@pytest.mark.parametrize("value, expected", [("auto", "auto"), (True, True), ("False", False)])
def test_compile_is_auto_true_or_false(value, expected):
    assert make_config(compile=value).compile == expected


def test_compile_refuses_anything_else():
    with pytest.raises(ConfigError, match="compile='fast' is not one of 'auto', True, False"):
        make_config(compile="fast")


def test_figures_go_under_output_dir_unless_figures_dir_is_set():
    assert make_config(output_dir="runs/a").figures_folder == os.path.join("runs/a", "figures")
    assert make_config(figures_dir="elsewhere").figures_folder == "elsewhere"


def test_the_notebook_parameters_cell_holds_exactly_the_declared_parameters_at_their_defaults():
    import ast
    import json

    from conftest import ROOT
    from helpers.settings import PARAMETERS

    with open(os.path.join(ROOT, "final-code.ipynb")) as file:
        cells = json.load(file)["cells"]
    source, = ["".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", [])]
    # Plain literals, one assignment per parameter, as papermill needs them.
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body}
    assert list(values) == list(PARAMETERS)
    for name, value in values.items():
        declared = PARAMETERS[name].default
        assert value == (list(declared) if isinstance(declared, tuple) else declared), name
    assert all(p.meaning and str(p.kind) for p in PARAMETERS.values())


def test_a_checkpoint_from_before_a_setting_existed_counts_as_its_default():
    saved = RunConfig().to_dict()
    del saved["architecture"], saved["teacher_weights"]
    assert config_differences(saved, make_config()) == []
    assert "architecture" in config_differences(saved, make_config(architecture="se_resnet"))[0]


# --- what people type: papermill's guessed types, the command line, Python ----------------------

# For every parameter, spellings a user plausibly types after `-p name` or `--name`, and the
# value they mean. Some parameters need others set to have an effect (CONTEXT).
PLAUSIBLE = {
    "epochs": [("3", 3), ("3.0", 3), ("1e2", 100)],
    "batch_size": [("128", 128)],
    "lr": [("0.05", 0.05), ("5e-2", 0.05), (".05", 0.05)],
    "momentum": [("0.8", 0.8)],
    "weight_decay": [("5e-4", 5e-4), ("0", 0.0)],
    "milestones": [("[30, 60]", (30, 60)), ("30,60", (30, 60)), ("30 60", (30, 60)), ("50", (50,))],
    "gamma": [("0.2", 0.2)],
    "seed": [("7", 7)],
    "data_source": [("folder", "folder"), ("Folder", "folder")],
    "data_dir": [("2024", "2024"), ("data/cifar10-jpeg", "data/cifar10-jpeg")],
    "val_size": [("0", 0), ("5000", 5000)],
    "train_subset": [("2000", 2000), ("None", None)],
    "test_subset": [("1000", 1000), ("None", None)],
    "device": [("cpu", "cpu"), ("CPU", "cpu"), ("auto", "auto")],
    "output_dir": [("2024", "2024"), ("runs/2024-11-29", "runs/2024-11-29")],
    "figures_dir": [("None", None), ("7", "7")],
    "resume": [("True", True), ("true", True), ("False", False), ("1", True)],
    "kaggle_test_pkl": [("None", None), ("12345", "12345"), ("test.pkl", "test.pkl")],
    "recipe": [("improved", "improved"), ("Improved", "improved")],
    "architecture": [("se_resnet", "se_resnet")],
    "pipeline": [("dataloader", "dataloader")],
    "amp": [("off", "off"), ("False", "off"), ("bf16", "bf16")],
    "compile": [("False", False), ("false", False), ("True", True), ("auto", "auto")],
    "num_workers": [("4", 4), ("0", 0), ("None", None)],
    "eval_batch_size": [("512", 512)],
    "progress": [("lines", "lines"), ("None", "none"), ("False", "none")],
    "recipe_overrides": [
        ('{"cutout_size": 0, "tta_flip": false}', {"cutout_size": 0, "tta_flip": False}),
        ("{'cutout_size': 0}", {"cutout_size": 0}),
        ("cutout_size=0, tta_flip=False", {"cutout_size": 0, "tta_flip": False}),
        ("milestones=[30, 60], gamma=0.2", {"milestones": [30, 60], "gamma": 0.2}),
        ('{"milestones": [30, 60]}', {"milestones": [30, 60]}),
        ("None", None), ("{}", None)],
    "test_each_epoch": [("True", True)],
    "model_weights": [("a.pt", ("a.pt",)), ("['a.pt', 'b.pt']", ("a.pt", "b.pt")),
                      ('["a.pt", "b.pt"]', ("a.pt", "b.pt")), ("a.pt, b.pt", ("a.pt", "b.pt")),
                      ("2024", ("2024",))],
    "teacher_weights": [("t.pt", ("t.pt",))],
    "width_multiplier": [("0.5", 0.5), ("0.25", 0.25), ("1", 1.0), (".5", 0.5)],
    "blocks": [("[2, 2, 2]", (2, 2, 2)), ("2,2,2", (2, 2, 2)), ("2 2 2", (2, 2, 2))],
    "quantize": [("int8", "int8"), ("INT8", "int8"), ("off", "off"), ("False", "off")],
    "calibration_images": [("500", 500), ("5e3", 5000)],
    "corruptions": [("True", True), ("yes", True), ("0", False)],
}
CONTEXT = {"num_workers": {"pipeline": "dataloader"}, "calibration_images": {"quantize": "int8"}}


def test_every_parameter_has_plausible_spellings_to_try():
    from helpers.settings import PARAMETERS

    assert set(PLAUSIBLE) == set(PARAMETERS)


@pytest.mark.parametrize("name, typed, meant", [(name, typed, meant) for name, cases in
                                                PLAUSIBLE.items() for typed, meant in cases])
def test_papermill_and_the_command_line_read_what_a_user_types(name, typed, meant):
    from papermill.cli import _resolve_type  # what papermill does to every -p value

    from helpers.cli import parse_args

    context = CONTEXT.get(name, {})
    from_papermill = make_config(**context, **{name: _resolve_type(typed)})
    from_command_line = parse_args([f"--{name}", typed, *[f"--{k}={v}" for k, v in context.items()]])
    assert getattr(from_papermill, name) == getattr(from_command_line, name) == meant


@pytest.mark.parametrize("value", [1.5, True, float("nan")])
def test_a_path_papermill_turned_into_a_number_says_so_and_names_raw_text(value):
    with pytest.raises(ConfigError, match=r"output_dir=.* must be a path; papermill reads a -p value "
                                          r"that looks like a number .* -r output_dir"):
        make_config(output_dir=value)


@pytest.mark.parametrize("name, value, says", [
    ("milestones", "30, x", "'x' is not an integer"),
    ("recipe_overrides", "{'cutout_size': }", "at character"),
    ("recipe_overrides", "{'tta_flip': false}", "false is not a value"),
    ("recipe_overrides", "[1, 2]", "must be a dict of recipe settings, e.g. {'cutout_size': 0, "
                                   "'mixup_alpha': 0.2}, not a list"),
    ("recipe_overrides", "{1: 2}", "every name in quotes"),
    ("model_weights", "[]", "not an empty list"),
    ("device", "gpu", "device='gpu' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
])
def test_a_structured_value_says_which_part_is_wrong(name, value, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        make_config(**{name: value})


def test_every_range_violation_reads_the_same_and_comes_from_the_declaration():
    from helpers.settings import PARAMETERS
    from helpers.settings import Number, OrNone

    checked = 0
    for name, declared in PARAMETERS.items():
        kind = declared.kind.kind if isinstance(declared.kind, OrNone) else declared.kind
        if not isinstance(kind, Number):
            continue
        low = kind.range.low
        outside = low - 1 if low != float("-inf") else kind.range.high + 1
        outside = int(outside) if isinstance(declared.default, int) or declared.default is None else outside
        with pytest.raises(ConfigError) as error:
            make_config(**{name: outside})
        assert str(error.value) == f"{name}={outside!r} must be {kind.range}", name
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("parameters, says", [
    ({"recipe": "improved", "lr": 0.5}, "lr=0.5 has no effect here: recipe='improved' has its own "
                                       "lr: change that with recipe_overrides={'lr': 0.5}"),
    ({"recipe": "improved", "milestones": [10, 20]}, "recipe_overrides={'milestones': [10, 20]}"),
    ({"recipe_overrides": {"schedule": "warmup_cosine"}, "gamma": 0.5},
     "gamma=0.5 has no effect here: recipe_overrides sets schedule='warmup_cosine'"),
    ({"num_workers": 4}, "num_workers=4 has no effect here: pipeline='fast' has no DataLoader workers"),
    ({"model_weights": "a.pt", "epochs": 2}, "epochs=2 has no effect here: model_weights is set, and "
                                             "an evaluation trains nothing: leave epochs at its default, 75"),
    ({"model_weights": "a.pt", "teacher_weights": "t.pt"}, "teacher_weights=['t.pt'] has no effect"),
    ({"model_weights": "a.pt", "val_size": 0, "seed": 3}, "val_size=0 has no effect here"),
    ({"data_source": "synthetic", "data_dir": "images"}, "data_dir='images' has no effect here: "
                                                         "data_source='synthetic'"),
])
def test_a_setting_without_effect_stops_the_run_naming_what_applies(parameters, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        make_config(**parameters)


def test_settings_at_their_defaults_never_count_as_set():
    make_config(recipe="improved", lr=0.1, milestones="[30, 40, 60, 80]")
    make_config(model_weights="a.pt", val_size=5000, num_workers=None, epochs="75")
    make_config(pipeline="dataloader", num_workers=2, data_source="synthetic", data_dir="data")


def test_an_evaluation_takes_only_the_test_time_settings_of_a_recipe():
    from helpers.settings import recipe_of

    assert recipe_of(make_config(model_weights="a.pt", recipe="improved",
                                      recipe_overrides="tta_flip=False")).tta.flip is False
    with pytest.raises(ConfigError, match=r"recipe_overrides \['cutout_size'\] have no effect here"):
        recipe_of(make_config(model_weights="a.pt", recipe_overrides={"cutout_size": 0}))


def _path_parameters():
    from helpers.settings import PARAMETERS
    from helpers.settings import Path, Paths

    return [name for name, p in PARAMETERS.items()
            if isinstance(getattr(p.kind, "kind", p.kind), (Path, Paths))]


@pytest.mark.parametrize("name", _path_parameters())
def test_every_path_parameter_takes_a_leading_tilde_as_the_home_folder(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    value = getattr(make_config(**{name: "~/runs/a"}), name)
    assert (value if isinstance(value, str) else value[0]) == str(tmp_path / "runs" / "a")
