"""The notebook's parameters: each declared once, read from any spelling of its value, checked,
and frozen into a RunConfig; and the recipe settings `recipe_overrides` may change.

A parameter is one field of `RunConfig`: name, type and default, then the kind of value it takes
(how a value is read, and its range or choices), what it means, and, if it has an effect only in
some runs, when. `make_config`'s checks and messages, the command line's options and --help, the
README's parameter table and the did-you-mean suggestions all follow from the declaration. A
parameter set away from its default where it has no effect stops the run: a setting that is
silently ignored is a result nobody asked for.

Values arrive three ways, and every kind reads all three: Python values typed in the notebook;
strings from the command line; and papermill's guesses, which turn a `-p` value that looks like
a number, True, False or None into one (`-p output_dir 2024` arrives as the integer 2024) and
leave anything else a string (`-p milestones "[30, 60]"`). A value that is not of its kind, or
out of its range, gives one message of the same shape for every parameter: "name=value must be
..." or "name=value is not one of ...".
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import torch

from .env import PAPERMILL_HEADER, ExplainedError, setting
from .model import ARCHITECTURES
from .recipes import SCHEDULES, TTA_SETTINGS, Recipe, improved_recipe, reference_recipe


class ConfigError(ExplainedError, ValueError):
    """A parameter has a value the pipeline cannot run with; the message says which and why."""


class BadValue(ValueError):
    """A value a kind refuses; the message says why, after "name=value": "must be an integer"."""


class TypedAsText(BadValue):
    """A value refused by a kind that takes text, which papermill may have turned into it."""


def literal(value: Any) -> Any:
    """A string that spells a Python or JSON literal ("[30, 60]", "5", "None", "true") as that
    value; anything else as it is."""
    if isinstance(value, str):
        for parse in (ast.literal_eval, json.loads):
            try:
                return parse(value.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
    return value


def why_unreadable(text: str) -> str:
    """Where a string meant as a Python or JSON value goes wrong, for the message."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        return f"it stops making sense at character {error.offset} ({error.msg})"
    names = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)})
    if names:
        return (f"{', '.join(names)} is not a value: put text in quotes, and write true, false "
                "and null as True, False and None (or the whole in JSON)")
    return "it holds something other than numbers, text, lists and dicts"


class Kind:
    """What a parameter takes: `read(value)` turns any spelling of a value into the value, or
    raises BadValue; str(kind) is what it accepts, for the README's parameter table."""
    accepts = "any value"

    def __str__(self) -> str:
        return self.accepts


@dataclass(frozen=True)
class Range:
    """Numbers from `low` to `high`, written as messages say it: "in (0, 10]", "at least 1"."""
    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        return (self.low < x if self.low_open else self.low <= x) and \
            (x < self.high if self.high_open else x <= self.high)

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'more than' if self.low_open else 'at least'} {self.low:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


@dataclass(frozen=True)
class Number(Kind):
    """A finite number in `range`, read as a float; if `integral`, an integer ("1e4" and 3.0
    are integers too)."""
    range: Range
    integral: bool = False

    def read(self, value: Any) -> Any:
        value = literal(value)
        if self.integral and isinstance(value, float) and value.is_integer():
            value = int(value)  # "1e4", or a float typed where an integer was meant
        types = int if self.integral else (int, float)
        if isinstance(value, bool) or not isinstance(value, types) or \
                isinstance(value, float) and not math.isfinite(value):
            raise BadValue("must be an integer" if self.integral else "must be a finite number")
        if value not in self.range:
            raise BadValue(f"must be {self.range}")
        return value if self.integral else float(value)

    def __str__(self) -> str:
        bound = str(self.range) if self.range.high < math.inf else \
            f"{'>' if self.range.low_open else '≥'} {self.range.low:g}"  # "≥ 0", for tables
        return f"{'integer' if self.integral else 'number'} {bound}"


def integer(low: float, high: float = math.inf) -> Number:
    return Number(Range(low, high), integral=True)


BOOLEAN_WORDS = {**dict.fromkeys(("true", "yes", "on", "1"), True),
                 **dict.fromkeys(("false", "no", "off", "0"), False)}


class Flag(Kind):
    """True or False; also 1 or 0, or true, yes, on, false, no or off in any case."""
    accepts = "True or False"

    def read(self, value: Any) -> bool:
        if isinstance(value, str) and value.strip().lower() in BOOLEAN_WORDS:
            return BOOLEAN_WORDS[value.strip().lower()]
        if isinstance(value, int) and value in (0, 1):  # True and False among them
            return bool(value)
        raise BadValue("must be True or False")


class Choice(Kind):
    """One of a few values. Text matches whatever its case; `aliases` maps other spellings
    people use (None or False for "none", say) onto a choice."""

    def __init__(self, *choices: Any, aliases: Optional[Mapping[Any, Any]] = None):
        self.choices, self.aliases = choices, dict(aliases or {})
        self.accepts = " | ".join(map(repr, choices))
        self.refusal = "is not one of " + ", ".join(map(repr, choices))

    def read(self, value: Any) -> Any:
        # As typed, and as the literal it may spell ("False" on the command line means False).
        spellings = [value.strip().lower() if isinstance(value, str) else value, literal(value)]
        # Compared with their types: 1 == True, but 1 is not the choice True.
        for alias, choice in [*self.aliases.items(), *((c, c) for c in self.choices)]:
            key = alias.lower() if isinstance(alias, str) else alias
            if any(type(spelling) is type(key) and spelling == key for spelling in spellings):
                return choice
        # `-p recipe 2`: papermill turned what was typed into a number
        typed_as_text = all(isinstance(choice, str) for choice in self.choices) and \
            isinstance(value, (int, float)) and not isinstance(value, bool)
        raise (TypedAsText if typed_as_text else BadValue)(self.refusal)


class Device(Choice):
    """'auto', 'cpu', 'cuda' or 'cuda:N' in any case (a bare N means 'cuda:N', as to torch); a
    GPU only where CUDA is available."""

    def __init__(self) -> None:
        super().__init__("auto", "cpu", "cuda", "cuda:N")

    def read(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"cuda:{value}"
        text = value.strip().lower() if isinstance(value, str) else ""
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
            raise BadValue(self.refusal)
        if text.startswith("cuda") and not torch.cuda.is_available():
            raise BadValue("asked for a GPU, but CUDA is not available here "
                           "(torch.cuda.is_available() is False); use device='auto' or 'cpu'")
        return text


class Path(Kind):
    """A file or folder name; a leading ~ is the user's home folder, as in a shell (papermill
    and notebooks pass the text on unexpanded). An integer is taken as its digits (papermill's
    guess for `-p output_dir 2024`); from a float or a boolean the typed text cannot be
    recovered."""
    accepts = "path"

    def read(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, (float, bool)):
            raise TypedAsText("must be a path")
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise BadValue("must be a non-empty path")
        return os.path.expanduser(os.fspath(value))


class Paths(Kind):
    """One path or several, as a tuple: a list ("['a.pt', 'b.pt']", Python or JSON) or
    "a.pt, b.pt"."""
    accepts = "path or list of paths"

    def read(self, value: Any) -> Tuple[str, ...]:
        if isinstance(value, str):
            if value.strip()[:1] in "[(":
                value = literal(value)
            elif "," in value and not os.path.exists(os.path.expanduser(value)):
                value = [part.strip() for part in value.split(",")]
        paths = value if isinstance(value, (list, tuple)) else [value]
        if not paths:
            raise BadValue("must be a path or a list of paths, not an empty list")
        return tuple(Path().read(path) for path in paths)


class Integers(Kind):
    """A tuple of integers: [30, 60] (Python or JSON), "30, 60", "30 60", or one integer. Those
    `allows` accepts are valid; `rule` says what others must be, `example` what to write."""

    def __init__(self, accepts: str, example: str, allows: Callable[[tuple], bool], rule: str):
        self.accepts, self.example, self.allows, self.rule = accepts, example, allows, rule

    def read(self, value: Any) -> Tuple[int, ...]:
        value = literal(value)
        if isinstance(value, str):
            value = [literal(part) for part in value.replace(",", " ").split()]
        numbers = []
        for item in value if isinstance(value, (list, tuple)) else [value]:
            try:
                numbers.append(integer(-math.inf).read(item))
            except BadValue:
                raise BadValue(f"must be {self.example}; {item!r} is not an integer") from None
        if not self.allows(tuple(numbers)):
            raise BadValue(self.rule)
        return tuple(numbers)


class Settings(Kind):
    """Names and values, as a dict or None: a Python dict ({'cutout_size': 0}), a JSON object
    ({"tta_flip": false}) or name=value pairs (cutout_size=0, tta_flip=False). Which names and
    values are allowed is checked against the recipe (checked_overrides)."""
    accepts = "dict of setting names and values, or None"
    must_be = "must be a dict of recipe settings, e.g. {'cutout_size': 0, 'mixup_alpha': 0.2}"

    def read(self, value: Any) -> Optional[dict]:
        text = value.strip() if isinstance(value, str) else None
        if text and text[0] not in "{[(":
            pairs = [part.split("=", 1) for part in re.split(r",\s*(?=[A-Za-z_]\w*\s*=)", text)]
            if all(len(pair) == 2 and pair[0].strip().isidentifier() for pair in pairs):
                return {name.strip(): literal(setting.strip()) for name, setting in pairs}
        parsed = literal(value)
        if text is not None and parsed is value:
            raise BadValue(f"{self.must_be}; {why_unreadable(text)}")
        if parsed is None or parsed == {}:
            return None
        if not isinstance(parsed, Mapping):
            raise BadValue(f"{self.must_be}, not a {type(parsed).__name__}")
        if not all(isinstance(name, str) for name in parsed):
            raise BadValue(f"{self.must_be}, every name in quotes")
        return dict(parsed)


@dataclass(frozen=True)
class OrNone(Kind):
    """`kind`, or None (also "None", "none" or nothing): what the parameter's meaning says."""
    kind: Kind

    def read(self, value: Any) -> Any:
        if value is None or isinstance(value, str) and value.strip() in ("None", "none", ""):
            return None
        return self.kind.read(value)

    def __str__(self) -> str:
        return f"{self.kind} or None"


def read_value(name: str, value: Any, kind: Kind) -> Any:
    """`value` read as `kind`, or a ConfigError naming the parameter, the value and the fix."""
    shown_as = f"{name}={literal(value)!r}"  # "ten" shows as 'ten', "0.5" as 0.5
    try:
        return kind.read(value)
    except TypedAsText as refused:
        raise ConfigError(
            f"{shown_as} {refused}; papermill reads a -p value that looks like a number or "
            f"True/False as one, and its spelling is lost ({value!r} may have been typed "
            f"otherwise): pass it as text with -r, as typed: -r {name} VALUE") from None
    except BadValue as refused:
        raise ConfigError(f"{shown_as} {refused}") from None


# Kinds that the notebook's optimizer parameters share with recipe_overrides.
LEARNING_RATE = Number(Range(0, 10, low_open=True))
FRACTION = Number(Range(0, 1, high_open=True))   # momentum, weight decay, label smoothing, EMA
GAMMA = Number(Range(0, 1, low_open=True))
# Positive and increasing: each epoch after the one before, the first after 0. Epochs past
# `epochs` are valid: the reference schedule lists 80 in a 75-epoch run.
MILESTONES = Integers(
    accepts="increasing list of epochs", example="a list of epochs, e.g. [30, 40, 60, 80]",
    allows=lambda epochs: all(a < b for a, b in zip((0, *epochs), epochs)),
    rule="must be strictly increasing positive integers, e.g. [30, 40, 60, 80]")
BLOCKS = Integers(
    accepts="list of 3 integers in [1, 16]",
    example="three numbers of blocks, one per stage, e.g. [4, 4, 3]",
    allows=lambda counts: len(counts) == 3 and all(1 <= count <= 16 for count in counts),
    rule="must be three integers in [1, 16], one per stage, e.g. [4, 4, 3] or [2, 2, 2]")


# --- when a parameter has an effect ---------------------------------------------------------
# Each returns None where the parameter has an effect, else why not and what does; its
# docstring says where it has one, for the README's table.
Condition = Callable[[Mapping[str, Any], str], Optional[str]]


def only_training(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training"""
    if values["model_weights"] is not None:
        return (f"model_weights is set, and an evaluation trains nothing: leave {name} at its "
                f"default, {PARAMETERS[name].default!r}")
    return None


def only_reference_recipe(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training, recipe='reference'"""
    why = only_training(values, name)
    if not why and values["recipe"] != "reference":
        why = (f"recipe={values['recipe']!r} has its own {name}: change that with "
               f"recipe_overrides={{{name!r}: {shown(values[name])!r}}}")
    return why


def only_multistep(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training, recipe='reference', multistep schedule"""
    schedule = (values["recipe_overrides"] or {}).get("schedule", "multistep")
    why = only_reference_recipe(values, name)
    if not why and schedule != "multistep":
        why = f"recipe_overrides sets schedule={schedule!r}, which has no milestones"
    return why


def only_dataloader(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training, pipeline='dataloader'"""
    why = only_training(values, name)
    if not why and values["pipeline"] != "dataloader":
        why = (f"pipeline={values['pipeline']!r} has no DataLoader workers "
               "(pipeline='dataloader' has)")
    return why


def only_trained_network(values: Mapping[str, Any], name: str) -> Optional[str]:
    """training (weights files record their own)"""
    if values["model_weights"] is not None:
        return (f"model_weights is set, and each weights file records the size of its network "
                f"(width_multiplier and blocks), which is rebuilt from it: leave {name} at its "
                f"default, {shown(PARAMETERS[name].default)!r}")
    return None


def only_quantizing(values: Mapping[str, Any], name: str) -> Optional[str]:
    """quantize='int8'"""
    if values["quantize"] != "int8":
        return f"quantize={values['quantize']!r}: nothing is calibrated (quantize='int8' is)"
    return None


def only_reading_files(values: Mapping[str, Any], name: str) -> Optional[str]:
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

    epochs: int = parameter(75, integer(1, 10_000), "training epochs", when=only_training,
                            resumable=True)
    batch_size: int = parameter(256, integer(1, 65_536), "images per SGD step (global under "
                                "torchrun)", when=only_training)
    lr: float = parameter(0.1, LEARNING_RATE, "SGD learning rate", when=only_reference_recipe)
    momentum: float = parameter(0.9, FRACTION, "SGD momentum", when=only_reference_recipe)
    weight_decay: float = parameter(1e-4, FRACTION, "L2 penalty", when=only_reference_recipe)
    milestones: Tuple[int, ...] = parameter(
        (30, 40, 60, 80), MILESTONES, "epochs at which the learning rate is multiplied by gamma",
        when=only_multistep)
    gamma: float = parameter(0.1, GAMMA, "learning-rate multiplier at each milestone",
                             when=only_multistep)
    seed: int = parameter(0, integer(0), "weights, validation split, shuffling and augmentation",
                          when=only_training)
    data_source: str = parameter(
        "torchvision", Choice("torchvision", "folder", "synthetic"), "torchvision: download the "
        "official set into data_dir; folder: read image folders; synthetic: stand-ins for tests")
    data_dir: str = parameter("data", Path(), "download folder, or the image folders' root "
                              "(train/<class>/, test/<class>/)", when=only_reading_files)
    val_size: int = parameter(5000, integer(0), "training images held out for validation (0: "
                              "none; best.pt is then the last epoch)", when=only_training)
    train_subset: Optional[int] = parameter(
        None, OrNone(integer(10)), "only N training images: the first N/10 of each class",
        when=only_training)
    test_subset: Optional[int] = parameter(
        None, OrNone(integer(10)), "only N test images: the first N/10 of each class",
        resumable=True)
    device: str = parameter("auto", Device(), "where to compute; auto: a GPU if there is one",
                            resumable=True)
    output_dir: str = parameter("outputs", Path(), "where every file of the run goes",
                                resumable=True)
    figures_dir: Optional[str] = parameter(
        None, OrNone(Path()), "PNG figures (None: output_dir/figures)", resumable=True)
    resume: bool = parameter(False, Flag(), "continue from output_dir/checkpoint.pt up to `epochs`",
                             when=only_training, resumable=True)
    kaggle_test_pkl: Optional[str] = parameter(
        None, OrNone(Path()), "an unlabeled test pickle to label into output_dir/submission.csv",
        resumable=True)
    recipe: str = parameter("reference", Choice("reference", "improved"),
                            "the report's recipe, or the improved one")
    architecture: str = parameter("resnet", Choice(*ARCHITECTURES), "the report's ResNet, it with "
                                  "squeeze-and-excitation, or ResNeXt blocks")
    pipeline: str = parameter(
        "fast", Choice("fast", "dataloader"), "augmentation batched on the device (fast), or per "
        "image in DataLoader workers", when=only_training)
    amp: str = parameter(
        "auto", Choice("auto", "bf16", "fp16", "off", aliases={False: "off", None: "off"}),
        "mixed precision of training; auto: bf16 on recent GPUs and on CPUs that compute it "
        "natively, fp16 on older GPUs, else none (evaluation on a CPU is fp32)")
    compile: Any = parameter(
        "auto", Choice("auto", True, False, aliases=BOOLEAN_WORDS),
        "compiled (True) or eager (False) training step; auto: the fastest verified on this kind "
        "of GPU, else eager", when=only_training, resumable=True)
    num_workers: Optional[int] = parameter(
        None, OrNone(integer(0)), "DataLoader workers (None: one per CPU this process may use)",
        when=only_dataloader, resumable=True)
    eval_batch_size: int = parameter(1024, integer(1), "images per evaluation batch",
                                     resumable=True)
    progress: str = parameter(
        "auto", Choice("auto", "bar", "lines", "none", aliases={None: "none", False: "none"}),
        "progress display; auto: a bar interactively, a line per epoch in logs", resumable=True)
    recipe_overrides: Optional[Mapping[str, Any]] = parameter(
        None, Settings(), 'single recipe settings, e.g. {"cutout_size": 0}')
    test_each_epoch: bool = parameter(
        False, Flag(), "also test after every epoch, for time-to-accuracy (chooses nothing)",
        when=only_training, resumable=True)
    model_weights: Optional[Tuple[str, ...]] = parameter(
        None, OrNone(Paths()), "a model.pt, or a list of them (an ensemble), to evaluate instead "
        "of training")
    teacher_weights: Optional[Tuple[str, ...]] = parameter(
        None, OrNone(Paths()), "a model.pt, or a list of them (averaged), to distil into the "
        "network", when=only_training)
    # A smaller student for distillation: the reference body with fewer channels and blocks.
    width_multiplier: float = parameter(
        1.0, Number(Range(0.25, 1)), "every layer's channels times this (rounded to a multiple "
        "of 8): 0.5 keeps about 1/4 of the parameters, 0.25 about 1/16", when=only_trained_network)
    blocks: Tuple[int, ...] = parameter((4, 4, 3), BLOCKS, "residual blocks in each of the three "
                                        "stages", when=only_trained_network)
    quantize: str = parameter(
        "off", Choice("off", "int8", aliases={False: "off", None: "off"}), "int8: a quantized "
        "copy of the network, tested on the CPU and saved as model-int8.pt", resumable=True)
    calibration_images: int = parameter(
        1000, integer(10, 50_000), "training images, stratified by class, that set the int8 "
        "activation ranges", when=only_quantizing, resumable=True)
    corruptions: bool = parameter(
        False, Flag(), "also test on corrupted copies of the test images: 11 kinds after "
        "CIFAR-10-C, severities 1 to 5", resumable=True)

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


PARAMETERS = {f.name: Parameter(f.name, f.default, **f.metadata)
              for f in dataclasses.fields(RunConfig)}
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
        guess = f" — did you mean {close!r}?" if close else ""
        parts.append(f"unknown {what} {name!r}{guess}")
        guessed = guessed and bool(close)
    return "; ".join(parts) + ("" if guessed else f" (known: {', '.join(known)})")


def closest(name: str, known: Iterable[str]) -> Optional[str]:
    """The known name `name` is most likely a misspelling of, or None."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


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


def config_differences(saved: Mapping[str, Any], current: RunConfig) -> list:
    """Settings that differ between a checkpoint's config and this one and would change the run."""
    now, defaults = current.to_dict(), RunConfig().to_dict()
    # A setting a checkpoint does not record is older than the setting: it ran at the default.
    then = {name: saved.get(name, default) for name, default in defaults.items()}
    return [f"{name}: checkpoint has {then[name]!r}, this run has {now[name]!r}"
            for name, p in PARAMETERS.items() if not p.resumable and then[name] != now[name]]


# --- recipe_overrides -------------------------------------------------------------------------

NON_NEGATIVE = Number(Range(0))
# Each setting recipe_overrides may change, and the kind of value it takes (with its range).
RECIPE_SETTINGS: Dict[str, Kind] = {
    "lr": LEARNING_RATE, "momentum": FRACTION, "nesterov": Flag(), "weight_decay": FRACTION,
    "decay_norm_and_bias": Flag(), "schedule": Choice(*SCHEDULES), "milestones": MILESTONES,
    "gamma": GAMMA, "warmup_epochs": NON_NEGATIVE, "label_smoothing": FRACTION,
    "ema_decay": FRACTION, "tta_flip": Flag(), "crop_padding": integer(0, 16), "flip": Flag(),
    "brightness": NON_NEGATIVE, "contrast": NON_NEGATIVE, "saturation": NON_NEGATIVE,
    "rotation_degrees": Number(Range(0, 180)), "cutout_size": integer(0, 32),
    "mixup_alpha": Number(Range(0, 10)), "cutmix_alpha": Number(Range(0, 10)),
    "tta_translate": integer(0, 8), "distill_weight": Number(Range(0, 1)),
    "distill_temperature": Number(Range(0, 100, low_open=True)),
}


def checked_overrides(overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """recipe_overrides read and checked: each name known (or a did-you-mean), each value of
    its setting's kind and range."""
    unknown = sorted(set(overrides) - set(RECIPE_SETTINGS))
    if unknown:
        message = unknown_parameter_message(unknown, RECIPE_SETTINGS, "recipe_overrides setting")
        guesses = {name: closest(name, RECIPE_SETTINGS) for name in unknown}
        if all(guesses.values()):  # the overrides as they were probably meant
            meant = {guesses.get(name) or name: value for name, value in overrides.items()}
            message += f" ({setting('recipe_overrides', meant)})"
        raise ConfigError(message)
    return {name: read_value(f"recipe_overrides[{name!r}]", value, RECIPE_SETTINGS[name])
            for name, value in overrides.items()}


def recipe_of(config: RunConfig) -> Recipe:
    """The concrete settings of `config.recipe` for this run, with `config.recipe_overrides`.
    An evaluation uses only the test-time views of a recipe: other overrides are refused."""
    overrides = config.recipe_overrides or {}
    unused = sorted(set(overrides) - set(TTA_SETTINGS))
    if config.evaluate_only and unused:
        raise ConfigError(f"recipe_overrides {unused} have no effect here: model_weights is set, "
                          "and an evaluation trains nothing (of the recipe it uses only "
                          f"{' and '.join(map(repr, TTA_SETTINGS))})")
    if config.recipe == "reference":
        recipe = reference_recipe(config.lr, config.momentum, config.weight_decay,
                                  config.milestones, config.gamma)
    else:
        recipe = improved_recipe(config.batch_size)
    return recipe.with_settings(checked_overrides(overrides))
