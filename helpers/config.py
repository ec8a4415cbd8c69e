"""The notebook's parameters, each declared once, and the validated, frozen RunConfig they make.

A parameter is one field of `RunConfig`: name, type and default, then the kind of value it takes
(how a value is read, and its range or choices; helpers/values.py), what it means, and, if it
has an effect only in some runs, when. `make_config`'s checks and messages, the command line's
options and --help, the README's parameter table and the did-you-mean suggestions all follow.
A parameter set away from its default where it has no effect stops the run: a setting that is
silently ignored is a result nobody asked for.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Tuple

import torch

from .launch import PAPERMILL_HEADER
from .values import (FALSE_WORDS, FRACTION, GAMMA, LEARNING_RATE, MILESTONES, TRUE_WORDS,
                     Blocks, Choice, ConfigError, Device, Flag, Kind, Number, OrNone, Path, Paths,
                     Range, Settings, integer, read_value)

ARCHITECTURES = ("resnet", "se_resnet", "resnext")  # helpers/model.py builds each

# --- when a parameter has an effect ---------------------------------------------------------
# Each returns None where the parameter has an effect, else why not and what does; its
# docstring says where it has one, for the README's table.
Condition = Callable[[Mapping[str, Any], str], Optional[str]]


def training(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training"""
    if values["model_weights"] is not None:
        return (f"model_weights is set, and an evaluation trains nothing: leave {name} at its "
                f"default, {PARAMETERS[name].default!r}")
    return None


def reference_recipe(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training, recipe='reference'"""
    if values["recipe"] != "reference" and not training(values, name):
        return (f"recipe={values['recipe']!r} has its own {name}: change that with "
                f"recipe_overrides={{{name!r}: {shown(values[name])!r}}}")
    return training(values, name)


def multistep_schedule(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training, recipe='reference', multistep schedule"""
    schedule = (values["recipe_overrides"] or {}).get("schedule", "multistep")
    if schedule != "multistep" and not reference_recipe(values, name):
        return f"recipe_overrides sets schedule={schedule!r}, which has no milestones"
    return reference_recipe(values, name)


def dataloader_pipeline(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training, pipeline='dataloader'"""
    if values["pipeline"] != "dataloader" and not training(values, name):
        return f"pipeline={values['pipeline']!r} has no DataLoader workers (pipeline='dataloader' has)"
    return training(values, name)


def trained_network(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training (weights files record their own)"""
    if values["model_weights"] is not None:
        return (f"model_weights is set, and each weights file records the size of its network "
                f"(width_multiplier and blocks), which is rebuilt from it: leave {name} at its "
                f"default, {shown(PARAMETERS[name].default)!r}")
    return None


def quantizing(values: Mapping[str, Any], name: str) -> Optional[str]:
    """quantize='int8'"""
    if values["quantize"] != "int8":
        return f"quantize={values['quantize']!r}: nothing is calibrated (quantize='int8' is)"
    return None


def reads_files(values: Mapping[str, Any], name: str) -> Optional[str]:
    """data_source 'torchvision' or 'folder'"""
    if values["data_source"] == "synthetic":
        return "data_source='synthetic' makes its images and reads no files"
    return None


def parameter(default: Any, kind: Kind, meaning: str, *, when: Optional[Condition] = None,
              resumable: bool = False) -> Any:
    """A RunConfig field with its declaration. `resumable`: it may differ when a run is resumed
    without changing what the run computes (where files go, how progress shows, training longer)."""
    return dataclasses.field(default=default, metadata={
        "kind": kind, "meaning": meaning, "when": when, "resumable": resumable})


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one run; field names are the notebook's parameter names."""

    epochs: int = parameter(75, integer(1, 10_000), "training epochs", when=training, resumable=True)
    batch_size: int = parameter(256, integer(1, 65_536), "images per SGD step (global under "
                                "torchrun)", when=training)
    lr: float = parameter(0.1, LEARNING_RATE, "SGD learning rate",
                          when=reference_recipe)
    momentum: float = parameter(0.9, FRACTION, "SGD momentum",
                                when=reference_recipe)
    weight_decay: float = parameter(1e-4, FRACTION, "L2 penalty",
                                    when=reference_recipe)
    milestones: Tuple[int, ...] = parameter((30, 40, 60, 80), MILESTONES, "epochs at which the "
                                            "learning rate is multiplied by gamma", when=multistep_schedule)
    gamma: float = parameter(0.1, GAMMA, "learning-rate multiplier at each milestone",
                             when=multistep_schedule)
    seed: int = parameter(0, integer(0), "weights, validation split, shuffling and augmentation",
                          when=training)
    data_source: str = parameter("torchvision", Choice("torchvision", "folder", "synthetic"),
                                 "torchvision: download the official set into "
                                 "data_dir; folder: read image folders; synthetic: stand-ins "
                                 "for tests")
    data_dir: str = parameter("data", Path(), "download folder, or the image folders' root "
                              "(train/<class>/, test/<class>/)", when=reads_files)
    val_size: int = parameter(5000, integer(0), "training images held out for validation (0: "
                              "none; best.pt is then the last epoch)", when=training)
    train_subset: Optional[int] = parameter(None, OrNone(integer(10)), "only N training "
                                            "images: the first N/10 of each class", when=training)
    test_subset: Optional[int] = parameter(None, OrNone(integer(10)), "only N test "
                                           "images: the first N/10 of each class", resumable=True)
    device: str = parameter("auto", Device(), "where to compute; auto: a GPU if there is one",
                            resumable=True)
    output_dir: str = parameter("outputs", Path(), "where every file of the run goes", resumable=True)
    figures_dir: Optional[str] = parameter(None, OrNone(Path()), "PNG figures (None: "
                                           "output_dir/figures)", resumable=True)
    resume: bool = parameter(False, Flag(), "continue from output_dir/checkpoint.pt up to `epochs`",
                             when=training, resumable=True)
    kaggle_test_pkl: Optional[str] = parameter(None, OrNone(Path()), "an unlabeled test pickle to "
                                               "label into output_dir/submission.csv",
                                               resumable=True)
    recipe: str = parameter("reference", Choice("reference", "improved"),
                            "the report's recipe, or the improved one")
    architecture: str = parameter("resnet", Choice(*ARCHITECTURES),
                                  "the report's ResNet, it with squeeze-and-excitation, "
                                  "or ResNeXt blocks")
    pipeline: str = parameter("fast", Choice("fast", "dataloader"), "augmentation batched on the "
                              "device (fast), or per image in DataLoader workers", when=training)
    amp: str = parameter("auto", Choice("auto", "bf16", "fp16", "off",
                                        aliases={False: "off", None: "off"}),
                         "mixed precision; auto: bf16 on recent GPUs, fp16 on older ones, none "
                         "on a CPU")
    compile: Any = parameter("auto", Choice("auto", True, False, aliases={
        **{word: True for word in TRUE_WORDS}, **{word: False for word in FALSE_WORDS}}),
        "compiled (True) or eager (False) training step; auto: the fastest verified on "
        "this kind of GPU, else eager", when=training, resumable=True)
    num_workers: Optional[int] = parameter(None, OrNone(integer(0)), 'DataLoader workers '
                                           '(None: one per CPU this process may use)',
                                           when=dataloader_pipeline, resumable=True)
    eval_batch_size: int = parameter(1024, integer(1), "images per evaluation batch", resumable=True)
    progress: str = parameter("auto", Choice("auto", "bar", "lines", "none",
                                             aliases={None: "none", False: "none"}),
                              "progress display; auto: a bar interactively, a line per epoch "
                              "in logs",
                              resumable=True)
    recipe_overrides: Optional[Mapping[str, Any]] = parameter(
        None, Settings(), 'single recipe settings, e.g. {"cutout_size": 0}')
    test_each_epoch: bool = parameter(False, Flag(), "also test after every epoch, for "
                                      "time-to-accuracy (chooses nothing)", when=training,
                                      resumable=True)
    model_weights: Optional[Tuple[str, ...]] = parameter(None, OrNone(Paths()), "a model.pt, or a "
                                                         "list of them (an ensemble), to evaluate "
                                                         "instead of training")
    teacher_weights: Optional[Tuple[str, ...]] = parameter(None, OrNone(Paths()), "a model.pt, or "
                                                           "a list of them (averaged), to distil "
                                                           "into the network", when=training)
    # A smaller student for distillation: the reference body with fewer channels and blocks.
    width_multiplier: float = parameter(1.0, Number(Range(0.25, 1)), "every layer's channels "
                                        "times this (rounded to a multiple of 8): 0.5 keeps "
                                        "about 1/4 of the parameters, 0.25 about 1/16",
                                        when=trained_network)
    blocks: Tuple[int, ...] = parameter((4, 4, 3), Blocks(), "residual blocks in each of the "
                                        "three stages", when=trained_network)
    quantize: str = parameter("off", Choice("off", "int8", aliases={False: "off", None: "off"}),
                              "int8: a quantized copy of the network, tested "
                              "on the CPU and saved as model-int8.pt", resumable=True)
    calibration_images: int = parameter(1000, integer(10, 50_000), "training images, stratified by "
                                        "class, that set the int8 activation ranges", when=quantizing, resumable=True)

    @property
    def figures_folder(self) -> str:
        """Where figures go: figures_dir, or by default output_dir/figures (never the
        committed figures/ folder, which only scripts/make_figures.py rewrites)."""
        return self.figures_dir or os.path.join(self.output_dir, "figures")

    @property
    def evaluate_only(self) -> bool:
        return self.model_weights is not None

    def to_dict(self) -> dict:
        """Plain JSON-friendly dict (lists instead of tuples)."""
        return {name: shown(value) for name, value in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Parameter:
    """One parameter's declaration, as its RunConfig field states it."""

    name: str
    default: Any
    kind: Kind
    meaning: str
    when: Optional[Condition]
    resumable: bool


PARAMETERS = {f.name: Parameter(f.name, f.default, **f.metadata) for f in dataclasses.fields(RunConfig)}
PARAMETER_NAMES = tuple(PARAMETERS)


def shown(value: Any) -> Any:
    """A value as people write it (and JSON stores it): lists, not tuples."""
    return list(value) if isinstance(value, tuple) else value


def unknown_parameter_message(names: Iterable[str], known: Iterable[str] = PARAMETER_NAMES,
                              what: str = "parameter") -> str:
    """"unknown parameter 'epoch' — did you mean 'epochs'?" for each unknown name."""
    known = list(known)
    parts, guessed = [], True
    for name in sorted(names):
        close = closest(name, known)
        parts.append(f"unknown {what} {name!r}" + (f" — did you mean {close!r}?" if close else ""))
        guessed = guessed and bool(close)
    return "; ".join(parts) + ("" if guessed else f" (known: {', '.join(known)})")


def closest(name: str, known: Iterable[str]) -> Optional[str]:
    """The known name `name` is most likely a misspelling of, or None."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_writable(name: str, folder: str) -> None:
    """Fail now, not after an hour of training, if `folder` cannot be created or written."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{name}={folder!r} is not a writable folder: {error.strerror}") from None


def make_config(**parameters: Any) -> RunConfig:
    """Read every parameter as its kind, check that each one set away from its default has an
    effect in this run, and freeze them into a RunConfig."""
    unknown = set(parameters) - set(PARAMETERS)
    _require(not unknown, unknown_parameter_message(unknown))
    values = {name: read_value(name, parameters.get(name, p.default), p.kind)
              for name, p in PARAMETERS.items()}
    unused = [f"{name}={shown(values[name])!r} has no effect here: {why}"
              for name, p in PARAMETERS.items() if p.when and values[name] != p.default
              for why in [p.when(values, name)] if why]
    _require(not unused, "; ".join(unused))
    return RunConfig(**values)


def injected_parameter_names(executed_cells: Iterable[str]) -> set:
    """Names that papermill's injected-parameters cell assigns, if the last cell run before
    this one is that cell (IPython's `In` lists the cells run, the current one last)."""
    cells = list(executed_cells)
    if len(cells) < 2 or not cells[-2].lstrip().startswith(PAPERMILL_HEADER):
        return set()
    try:
        tree = ast.parse(cells[-2])
    except SyntaxError:
        return set()
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def config_from_namespace(namespace: Mapping[str, Any]) -> RunConfig:
    """Build the RunConfig from the parameters cell's variables (e.g. the notebook's globals()).

    papermill only warns about a parameter the notebook does not have (`-p epoch 1`) and runs
    with the default instead, 75 epochs. So the names its injected cell set are checked here."""
    unknown = injected_parameter_names(namespace.get("In", [])) - set(PARAMETER_NAMES)
    _require(not unknown, unknown_parameter_message(unknown))
    return make_config(**{name: namespace[name] for name in PARAMETER_NAMES if name in namespace})


def resolve_device(config: RunConfig) -> torch.device:
    """'auto' means the first GPU when there is one, else the CPU."""
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def config_differences(saved: Mapping[str, Any], current: RunConfig) -> list:
    """Settings that differ between a checkpoint's config and this one and would change the run."""
    now, defaults = current.to_dict(), RunConfig().to_dict()
    # A setting a checkpoint does not record is older than the setting: it ran at the default.
    return [f"{name}: checkpoint has {saved.get(name, defaults[name])!r}, this run has {now[name]!r}"
            for name, p in PARAMETERS.items()
            if not p.resumable and saved.get(name, defaults[name]) != now[name]]
