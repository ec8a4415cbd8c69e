"""Kinds of parameter value: how a value is read from any spelling of it, and checked.

Values arrive three ways, and every kind reads all three: Python values typed in the notebook;
strings from the command line; and papermill's guesses, which turn a `-p` value that looks like
a number, True, False or None into one (`-p output_dir 2024` arrives as the integer 2024) and
leave anything else a string (`-p milestones "[30, 60]"`). `read_value` turns a value that is
not of its kind, or out of its range, into one message of the same shape for every parameter:
"name=value must be ..." or "name=value is not one of ...".
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

import torch

from .errors import ExplainedError


class ConfigError(ExplainedError, ValueError):
    """A parameter has a value the pipeline cannot run with; the message says which and why."""


class NotOfKind(ValueError):
    """A value is not of a parameter's kind; the message is what it must be instead.
    `typed_as_text`: the kind takes text, which papermill may have turned into this value."""

    def __init__(self, expected: str, typed_as_text: bool = False):
        super().__init__(expected)
        self.typed_as_text = typed_as_text


def literal(value: Any) -> Any:
    """A string that spells a Python or JSON literal ("[30, 60]", "5", "None", "true") as that
    value; anything else as it is."""
    if not isinstance(value, str):
        return value
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(value.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
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


@dataclass(frozen=True)
class Range:
    """An interval of numbers, printed as messages say it: "in (0, 10]", "at least 1"."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        return (value > self.low if self.low_open else value >= self.low) and \
            (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'more than' if self.low_open else 'at least'} {self.low:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")

    def compact(self) -> str:
        """"≥ 0" or "in (0, 10]", for tables."""
        if self.high == math.inf:
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        return str(self)


ANY_NUMBER = Range()


class Kind:
    """What a parameter takes: `read` turns any spelling of a value into the value (or raises
    NotOfKind); `problem` says what is wrong with a value that was read (its range, say)."""

    expected = "a value"   # for messages: "epochs='ten' must be an integer"
    accepts = "any value"  # for the README's parameter table

    def read(self, value: Any) -> Any:
        return value

    def problem(self, value: Any) -> Optional[str]:
        return None

    def __str__(self) -> str:
        return self.accepts


@dataclass(frozen=True)
class Number(Kind):
    range: Range = ANY_NUMBER
    expected = "a finite number"

    def read(self, value: Any) -> float:
        value = literal(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise NotOfKind(self.expected)
        return float(value)

    def problem(self, value: float) -> Optional[str]:
        return None if value in self.range else f"must be {self.range}"

    def __str__(self) -> str:
        return f"number {self.range.compact()}" if self.range != ANY_NUMBER else "number"


@dataclass(frozen=True)
class Integer(Number):
    expected = "an integer"

    def read(self, value: Any) -> int:
        value = literal(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # "1e4", or a float typed where an integer was meant
        if isinstance(value, bool) or not isinstance(value, int):
            raise NotOfKind(self.expected)
        return value

    def __str__(self) -> str:
        return f"integer {self.range.compact()}" if self.range != ANY_NUMBER else "integer"


def integer(low: float = -math.inf, high: float = math.inf) -> Integer:
    return Integer(Range(low, high))


TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class Flag(Kind):
    expected = accepts = "True or False"

    def read(self, value: Any) -> bool:
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
        if isinstance(value, int) and value in (0, 1):  # True and False among them
            return bool(value)
        raise NotOfKind(self.expected)


class Choice(Kind):
    """One of a few values. Text matches whatever its case; `aliases` maps other spellings
    people use (None or False for "none", say) onto a choice."""

    def __init__(self, *choices: Any, aliases: Optional[Mapping[Any, Any]] = None):
        self.choices, self.aliases = choices, dict(aliases or {})
        self.expected = "one of " + ", ".join(map(repr, choices))

    def read(self, value: Any) -> Any:
        # As typed, and as the literal it may spell ("False" on the command line means False).
        spellings = [value.strip().lower() if isinstance(value, str) else value, literal(value)]
        # Compared with their types: 1 == True, but 1 is not the choice True.
        for alias, choice in [*self.aliases.items(), *((c, c) for c in self.choices)]:
            key = alias.lower() if isinstance(alias, str) else alias
            if any(type(spelling) is type(key) and spelling == key for spelling in spellings):
                return choice
        names_only = all(isinstance(choice, str) for choice in self.choices)
        raise NotOfKind(self.expected, typed_as_text=names_only and isinstance(value, (int, float))
                        and not isinstance(value, bool))

    def __str__(self) -> str:
        return " | ".join(map(repr, self.choices))


class Path(Kind):
    """A file or folder name; a leading ~ is the user's home folder, as in a shell (papermill
    and notebooks pass the text on unexpanded). An integer is taken as its digits (papermill's
    guess for `-p output_dir 2024`); from a float or a boolean the typed text cannot be
    recovered."""

    expected, accepts = "a path", "path"

    def read(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, (float, bool)):
            raise NotOfKind(self.expected, typed_as_text=True)
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise NotOfKind("a non-empty path")
        return os.path.expanduser(os.fspath(value))


class Paths(Kind):
    """One path or several: a list ("['a.pt', 'b.pt']", Python or JSON) or "a.pt, b.pt"."""

    expected, accepts = "a path or a list of paths", "path or list of paths"

    def read(self, value: Any) -> Tuple[str, ...]:
        if isinstance(value, str):
            if value.strip()[:1] in "[(":
                value = literal(value)
            elif "," in value and not os.path.exists(os.path.expanduser(value)):
                value = [part.strip() for part in value.split(",")]
        paths = value if isinstance(value, (list, tuple)) else [value]
        if not paths:
            raise NotOfKind(f"{self.expected}, not an empty list")
        return tuple(Path().read(path) for path in paths)


class Integers(Kind):
    """A list of integers: [30, 60] (Python or JSON), "30, 60", "30 60", or one."""

    def read(self, value: Any) -> Tuple[int, ...]:
        value = literal(value)
        if isinstance(value, str):
            value = [literal(part) for part in value.replace(",", " ").split()]
        numbers = []
        for item in value if isinstance(value, (list, tuple)) else [value]:
            try:
                numbers.append(integer().read(item))
            except NotOfKind:
                raise NotOfKind(f"{self.expected}; {item!r} is not an integer") from None
        return tuple(numbers)


class Milestones(Integers):
    """Epochs, strictly increasing: [30, 60] (Python or JSON), "30, 60", "30 60", or one."""

    expected = "a list of epochs, e.g. [30, 40, 60, 80]"
    accepts = "increasing list of epochs"

    def problem(self, epochs: Tuple[int, ...]) -> Optional[str]:
        # Epochs past `epochs` are valid: the reference schedule lists 80 in a 75-epoch run.
        if any(e <= 0 for e in epochs) or any(b <= a for a, b in zip(epochs, epochs[1:])):
            return "must be strictly increasing positive integers, e.g. [30, 40, 60, 80]"
        return None


class Blocks(Integers):
    """Residual blocks per stage, one positive integer for each of the network's three stages:
    [2, 2, 2] (Python or JSON), "2, 2, 2" or "2 2 2"."""

    expected = "three numbers of blocks, one per stage, e.g. [4, 4, 3]"
    accepts = "list of 3 integers in [1, 16]"

    def problem(self, counts: Tuple[int, ...]) -> Optional[str]:
        if len(counts) != 3 or not all(1 <= count <= 16 for count in counts):
            return "must be three integers in [1, 16], one per stage, e.g. [4, 4, 3] or [2, 2, 2]"
        return None


class Settings(Kind):
    """Names and values: a Python dict ({'cutout_size': 0}), a JSON object ({"tta_flip":
    false}) or name=value pairs (cutout_size=0, tta_flip=False). Which names and values are
    allowed is the recipe's to check (recipes.apply_overrides)."""

    expected = "a dict of recipe settings, e.g. {'cutout_size': 0, 'mixup_alpha': 0.2}"
    accepts = "dict of setting names and values, or None"

    def read(self, value: Any) -> Optional[dict]:
        text = value.strip() if isinstance(value, str) else None
        if text and text[0] not in "{[(":
            pairs = [part.split("=", 1) for part in re.split(r",\s*(?=[A-Za-z_]\w*\s*=)", text)]
            if all(len(pair) == 2 and pair[0].strip().isidentifier() for pair in pairs):
                return {name.strip(): literal(setting.strip()) for name, setting in pairs}
        parsed = literal(value)
        if text is not None and parsed is value:
            raise NotOfKind(f"{self.expected}; {why_unreadable(text)}")
        if parsed is None or parsed == {}:
            return None
        if not isinstance(parsed, Mapping):
            raise NotOfKind(f"{self.expected}, not a {type(parsed).__name__}")
        if not all(isinstance(name, str) for name in parsed):
            raise NotOfKind(f"{self.expected}, every name in quotes")
        return dict(parsed)


class Device(Kind):
    expected = "one of 'auto', 'cpu', 'cuda', 'cuda:N'"

    def read(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"cuda:{value}"  # what torch means by a bare device number
        text = value.strip().lower() if isinstance(value, str) else ""
        if text not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", text):
            raise NotOfKind(self.expected)
        return text

    def problem(self, value: str) -> Optional[str]:
        if value.startswith("cuda") and not torch.cuda.is_available():
            return ("asked for a GPU, but CUDA is not available here (torch.cuda.is_available() "
                    "is False); use device='auto' or 'cpu'")
        return None

    accepts = "'auto' | 'cpu' | 'cuda' | 'cuda:N'"


@dataclass(frozen=True)
class OrNone(Kind):
    """None (or "None", or nothing) as well: the behaviour the parameter's meaning names."""

    kind: Kind

    def read(self, value: Any) -> Any:
        if value is None or isinstance(value, str) and value.strip() in ("None", "none", ""):
            return None
        return self.kind.read(value)

    def problem(self, value: Any) -> Optional[str]:
        return None if value is None else self.kind.problem(value)

    @property
    def expected(self) -> str:
        return f"{self.kind.expected}, or None"

    def __str__(self) -> str:
        return f"{self.kind} or None"


def read_value(name: str, value: Any, kind: Kind) -> Any:
    """`value` read as `kind`, or a ConfigError naming the parameter, the value and the fix."""
    shown = literal(value)  # "ten" shows as 'ten', "0.5" as 0.5
    try:
        result = kind.read(value)
    except NotOfKind as wanted:
        verb = "is not" if str(wanted).startswith("one of") else "must be"
        hint = ("; papermill reads a -p value that looks like a number or True/False as one, "
                f"and its spelling is lost ({value!r} may have been typed otherwise): pass it as "
                f"text with -r, as typed: -r {name} VALUE"
                if wanted.typed_as_text else "")
        raise ConfigError(f"{name}={shown!r} {verb} {wanted}{hint}") from None
    problem = kind.problem(result)
    if problem:
        raise ConfigError(f"{name}={shown!r} {problem}")
    return result


# Kinds that the notebook's optimizer parameters share with recipe_overrides.
LEARNING_RATE = Number(Range(0, 10, low_open=True))
FRACTION = Number(Range(0, 1, high_open=True))   # momentum, weight decay, label smoothing, EMA
GAMMA = Number(Range(0, 1, low_open=True))
MILESTONES = Milestones()
