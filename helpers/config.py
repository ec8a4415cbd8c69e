"""The notebook's parameters as one validated, frozen RunConfig.

papermill's `-p` delivers lists as strings ("[30, 60]") and numbers, None and booleans as Python
values; interactive users type Python values. `make_config` accepts both and checks every value
before any work starts, naming the parameter, the bad value and what would be valid.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Tuple

import torch

from .errors import ExplainedError

DATA_SOURCES = ("torchvision", "folder", "synthetic")
RECIPE_NAMES = ("reference", "improved")
ARCHITECTURES = ("resnet", "se_resnet", "resnext")
PIPELINES = ("fast", "dataloader")
AMP_MODES = ("auto", "bf16", "fp16", "off")
COMPILE_MODES = ("auto", True, False)
PROGRESS_MODES = ("auto", "bar", "lines", "none")


class ConfigError(ExplainedError, ValueError):
    """A parameter has a value the pipeline cannot run with; the message says which and why."""


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one run. Field names are the notebook's parameter names."""

    epochs: int = 75
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: Tuple[int, ...] = (30, 40, 60, 80)
    gamma: float = 0.1
    seed: int = 0
    data_source: str = "torchvision"
    data_dir: str = "data"
    val_size: int = 5000
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    device: str = "auto"
    output_dir: str = "outputs"
    figures_dir: Optional[str] = None
    resume: bool = False
    kaggle_test_pkl: Optional[str] = None
    recipe: str = "reference"
    architecture: str = "resnet"
    pipeline: str = "fast"
    amp: str = "auto"
    compile: Any = "auto"
    num_workers: Optional[int] = None
    eval_batch_size: int = 1024
    progress: str = "auto"
    recipe_overrides: Optional[Mapping[str, Any]] = None
    test_each_epoch: bool = False
    model_weights: Optional[Tuple[str, ...]] = None
    teacher_weights: Optional[Tuple[str, ...]] = None

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
        values = dataclasses.asdict(self)
        for name, value in values.items():
            if isinstance(value, tuple):
                values[name] = list(value)
        return values


PARAMETER_NAMES = tuple(f.name for f in dataclasses.fields(RunConfig))

# What each parameter means: the CLI's --help, the README's parameter table and the tests use it.
PARAMETER_HELP = {
    "epochs": "training epochs",
    "batch_size": "images per SGD step (the global batch under torchrun)",
    "lr": "SGD learning rate of the reference recipe",
    "momentum": "SGD momentum of the reference recipe",
    "weight_decay": "L2 penalty of the reference recipe",
    "milestones": "epochs at which the reference recipe multiplies the learning rate by gamma",
    "gamma": "learning-rate multiplier at each milestone",
    "seed": "weights, validation split, shuffling and augmentation",
    "data_source": '"torchvision" (official, downloaded) | "folder" (image folders) | "synthetic"',
    "data_dir": "download folder, or the image folders' root (train/<class>/, test/<class>/)",
    "val_size": "training images held out for validation (0: none; best.pt is then the last epoch)",
    "train_subset": "use only N class-balanced training images (quick runs)",
    "test_subset": "evaluate only N class-balanced test images (quick runs)",
    "device": '"auto" (a GPU if there is one) | "cpu" | "cuda" | "cuda:N"',
    "output_dir": "checkpoint.pt, best.pt, model.pt, metrics.json, submission.csv",
    "figures_dir": "PNG figures (None: output_dir/figures)",
    "resume": "continue from output_dir/checkpoint.pt up to `epochs`",
    "kaggle_test_pkl": "an unlabeled test pickle to label into output_dir/submission.csv",
    "recipe": '"reference" (the report\'s) | "improved"',
    "architecture": '"resnet" (the report\'s 4,697,162 parameters) | "se_resnet" | "resnext"',
    "pipeline": '"fast" (augmentation batched on the device) | "dataloader" (per-image PIL)',
    "amp": 'mixed precision: "auto" | "bf16" | "fp16" | "off"',
    "compile": '"auto" (compiled, graph-captured step on recent GPUs; eager elsewhere) | True | '
               'False (eager)',
    "num_workers": "DataLoader workers for pipeline \"dataloader\" (None: one per core)",
    "eval_batch_size": "images per evaluation batch",
    "progress": '"auto" | "bar" | "lines" (one line per epoch) | "none"',
    "recipe_overrides": 'change single recipe settings, e.g. {"cutout_size": 0, "mixup_alpha": 0.2}',
    "test_each_epoch": "also test after every epoch, for time-to-accuracy (chooses nothing)",
    "model_weights": "a model.pt, or a list of them (an ensemble), to evaluate instead of training",
    "teacher_weights": "a model.pt, or a list of them (averaged), to distil into the network",
}

# Settings that may change between a run and its resumption without changing what is computed:
# where files go, how progress is shown, and `epochs` (raising it trains longer).
RESUMABLE_CHANGES = ("epochs", "resume", "output_dir", "figures_dir", "kaggle_test_pkl",
                     "progress", "compile", "num_workers", "eval_batch_size", "device",
                     "test_each_epoch", "test_subset")


def unknown_parameter_message(names: Iterable[str], known: Iterable[str] = PARAMETER_NAMES,
                              what: str = "parameter") -> str:
    """"unknown parameter 'epoch' — did you mean 'epochs'?" for each unknown name."""
    known = list(known)
    parts, guessed = [], True
    for name in sorted(names):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        parts.append(f"unknown {what} {name!r}" + (f" — did you mean {close[0]!r}?" if close else ""))
        guessed = guessed and bool(close)
    return "; ".join(parts) + ("" if guessed else f" (known: {', '.join(known)})")


def _literal(name: str, value: Any, expected: str) -> Any:
    """Turn papermill's string form of a literal ("[30, 60]", "None", "5") into the value."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise ConfigError(f"{name}={value!r} must be {expected}") from None


def _as_int(name: str, value: Any) -> int:
    value = _literal(name, value, "an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an integer")
    return value


def _as_float(name: str, value: Any) -> float:
    value = _literal(name, value, "a number")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    return float(value)


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be True or False")
    return value


def _as_choice(name: str, value: Any, choices: Tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def _as_optional(name: str, value: Any, convert) -> Any:
    if value is None or (isinstance(value, str) and value.strip() in ("None", "")):
        return None
    return convert(name, value)


def _as_path(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{name}={value!r} must be a non-empty path")
    return str(value)


def _as_paths(name: str, value: Any) -> Tuple[str, ...]:
    """One path, or a list of them ("['a.pt', 'b.pt']" from papermill)."""
    if isinstance(value, str) and value.strip()[:1] in "[(":
        value = _literal(name, value, "a path or a list of paths")
    paths = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(paths, (list, tuple)) or not paths:
        raise ConfigError(f"{name}={value!r} must be a path or a non-empty list of paths")
    return tuple(_as_path(name, path) for path in paths)


def _as_compile(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if value not in COMPILE_MODES or isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ConfigError(f"compile={value!r} is not one of 'auto', True, False")
    return value


def _as_milestones(value: Any) -> Tuple[int, ...]:
    value = _literal("milestones", value, "a list of epochs, e.g. [30, 40, 60, 80]")
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"milestones={value!r} must be a list of epochs, e.g. [30, 40, 60, 80]")
    epochs = tuple(_as_int("milestones", v) for v in value)
    # Milestones past `epochs` are valid: the reference uses [30, 40, 60, 80] with 75 epochs.
    if any(e <= 0 for e in epochs) or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ConfigError(f"milestones={list(epochs)} must be strictly increasing positive "
                          "integers, e.g. [30, 40, 60, 80]")
    return epochs


def _as_overrides(value: Any) -> Optional[dict]:
    value = _literal("recipe_overrides", value, "a dict of recipe settings, e.g. {'cutout_size': 8}")
    if value is None or value == {}:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"recipe_overrides={value!r} must be a dict of recipe settings, "
                          "e.g. {'label_smoothing': 0.0, 'cutout_size': 8}")
    return dict(value)  # names and values are checked against the recipe by resolve_recipe


def in_range(low: float, high: float, low_open: bool = False, high_open: bool = False):
    """A range check and its description, e.g. "in (0, 1]" for in_range(0, 1, low_open=True)."""
    def check(value: float) -> bool:
        return (value > low if low_open else value >= low) and \
            (value < high if high_open else value <= high)

    return check, f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


# Ranges shared by the notebook's optimizer parameters and recipe_overrides.
LR_RANGE = in_range(0, 10, low_open=True)
FRACTION = in_range(0, 1, high_open=True)   # momentum, weight decay, label smoothing, EMA decay
GAMMA_RANGE = in_range(0, 1, low_open=True)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _require_in(name: str, value: float, value_range) -> None:
    valid, expected = value_range
    _require(valid(value), f"{name}={value} must be {expected}")


def _check_device(device: str) -> str:
    if device in ("auto", "cpu"):
        return device
    if device == "cuda" or device.startswith("cuda:"):
        _require(torch.cuda.is_available(),
                 f"device={device!r} asked for a GPU, but CUDA is not available here "
                 "(torch.cuda.is_available() is False); use device='auto' or 'cpu'")
        return device
    raise ConfigError(f"device={device!r} is not 'auto', 'cpu', 'cuda' or 'cuda:N'")


def check_writable(name: str, folder: str) -> None:
    """Fail now, not after an hour of training, if `folder` cannot be created or written."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{name}={folder!r} is not a writable folder: {error.strerror}") from None


def make_config(**parameters: Any) -> RunConfig:
    """Validate the notebook's parameters and freeze them into a RunConfig."""
    unknown = set(parameters) - set(PARAMETER_NAMES)
    _require(not unknown, unknown_parameter_message(unknown))
    raw = {**RunConfig().__dict__, **parameters}
    values = dict(
        epochs=_as_int("epochs", raw["epochs"]),
        batch_size=_as_int("batch_size", raw["batch_size"]),
        lr=_as_float("lr", raw["lr"]),
        momentum=_as_float("momentum", raw["momentum"]),
        weight_decay=_as_float("weight_decay", raw["weight_decay"]),
        milestones=_as_milestones(raw["milestones"]),
        gamma=_as_float("gamma", raw["gamma"]),
        seed=_as_int("seed", raw["seed"]),
        data_source=_as_choice("data_source", raw["data_source"], DATA_SOURCES),
        data_dir=_as_path("data_dir", raw["data_dir"]),
        val_size=_as_int("val_size", raw["val_size"]),
        train_subset=_as_optional("train_subset", raw["train_subset"], _as_int),
        test_subset=_as_optional("test_subset", raw["test_subset"], _as_int),
        device=_check_device(str(raw["device"])),
        output_dir=_as_path("output_dir", raw["output_dir"]),
        figures_dir=_as_optional("figures_dir", raw["figures_dir"], _as_path),
        resume=_as_bool("resume", raw["resume"]),
        kaggle_test_pkl=_as_optional("kaggle_test_pkl", raw["kaggle_test_pkl"], _as_path),
        recipe=_as_choice("recipe", raw["recipe"], RECIPE_NAMES),
        architecture=_as_choice("architecture", raw["architecture"], ARCHITECTURES),
        pipeline=_as_choice("pipeline", raw["pipeline"], PIPELINES),
        amp=_as_choice("amp", raw["amp"], AMP_MODES),
        compile=_as_compile(raw["compile"]),
        num_workers=_as_optional("num_workers", raw["num_workers"], _as_int),
        eval_batch_size=_as_int("eval_batch_size", raw["eval_batch_size"]),
        progress=_as_choice("progress", raw["progress"], PROGRESS_MODES),
        recipe_overrides=_as_overrides(raw["recipe_overrides"]),
        test_each_epoch=_as_bool("test_each_epoch", raw["test_each_epoch"]),
        model_weights=_as_optional("model_weights", raw["model_weights"], _as_paths),
        teacher_weights=_as_optional("teacher_weights", raw["teacher_weights"], _as_paths),
    )
    _require(1 <= values["epochs"] <= 10_000, f"epochs={values['epochs']} must be between 1 and 10000")
    _require(1 <= values["batch_size"] <= 65_536,
             f"batch_size={values['batch_size']} must be a positive integer (at most 65536)")
    for name, value_range in (("lr", LR_RANGE), ("momentum", FRACTION),
                              ("weight_decay", FRACTION), ("gamma", GAMMA_RANGE)):
        _require_in(name, values[name], value_range)
    _require(values["seed"] >= 0, f"seed={values['seed']} must be a non-negative integer")
    _require(values["val_size"] >= 0, f"val_size={values['val_size']} must be 0 (no validation) or more")
    for name in ("train_subset", "test_subset"):
        _require(values[name] is None or values[name] >= 10,
                 f"{name}={values[name]} must be None or at least 10 (one image per class)")
    _require(values["num_workers"] is None or values["num_workers"] >= 0,
             f"num_workers={values['num_workers']} must be None (one per core) or a non-negative integer")
    _require(values["eval_batch_size"] >= 1, f"eval_batch_size={values['eval_batch_size']} must be positive")
    return RunConfig(**values)


PAPERMILL_HEADER = "# Parameters"  # the first line of the cell papermill injects for -p


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
            for name in PARAMETER_NAMES
            if name not in RESUMABLE_CHANGES and saved.get(name, defaults[name]) != now[name]]
