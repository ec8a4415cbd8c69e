"""The shape of helpers/: lines per module, import layers and circles, the largest classes and
functions, the refusal sites, and the method's share of the lines.

    python scripts/code_shape.py            # a table per measure
    python scripts/code_shape.py --json     # the same as JSON (results/redesign/ keeps both)
    python scripts/code_shape.py --root DIR # another checkout, e.g. one made with `git worktree`

Definitions (the same for every checkout measured):
* lines: physical lines of each helpers/*.py file, as `wc -l` counts them. The core is
  helpers/*.py, the pipeline a default run executes; the options, helpers/options/*.py (named
  options.NAME), what a parameter turns on, are counted apart.
* import layers (over core and options together): a module that imports no other helpers module is layer 1; any other is one more
  than the highest layer it imports. Imports inside functions count. Modules on an import circle
  share one layer (the circle is reported).
* the method: the modules that compute what the project is about: the network, the recipes
  (optimizer, schedule and augmentation settings), the augmentation, the training step, the
  epoch loop with its optimizer and schedule, and the evaluation metrics: the modules METHOD
  pins; a module not there is not method. Its share is of the core's lines (of all of
  helpers/ in a checkout without options). Counted two ways: the modules whole, and without the
  top-level definitions in them that are not the method (NOT_METHOD, listed by name).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
from typing import Dict, List, Sequence, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The network, the recipes, the augmentation, the eager step, training (optimizer, schedule,
# EMA, train_one_epoch, fit) and evaluation (intervals, ECE, per-class scores).
METHOD = ("model", "recipes", "augment", "step", "training", "evaluation")
OPTIONS = "options"  # the package of helpers/ whose modules are counted apart
# Top-level definitions inside those modules that are not the method: before the redesign, the
# loop's class with its checkpointing, logging and interrupt messages, the progress display, the
# parameters' override parsing and a test's report parser. After it, the modules hold none.
NOT_METHOD = {
    "training": ("NonFiniteLossError", "progress_mode", "DisplayedText", "progress_bar",
                 "_stop_on_non_finite", "Trainer", "format_history", "format_epoch"),
    "step": ("kinds_passed",),
    "recipes": ("resolve_recipe", "NON_NEGATIVE", "_SETTINGS", "EVALUATION_SETTINGS",
                "AUGMENTATION_SETTINGS", "apply_overrides"),
    "model": ("check_parameter_budget",),
}


def modules(root: str, exclude: Sequence[str] = ()) -> Dict[str, str]:
    """{name: path} of helpers/*.py and, as options.NAME, helpers/options/*.py."""
    found = {}
    for package in ("", OPTIONS):
        folder = os.path.join(root, "helpers", package)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            module = (f"{package}." if package else "") + name[:-3]
            if name.endswith(".py") and module not in exclude and name[:-3] not in exclude:
                found[module] = os.path.join(folder, name)
    return found


def imported(path: str, names: Set[str], package: str = "") -> Set[str]:
    """The helpers modules a file of `package` ("" or OPTIONS) imports, at its top or inside
    functions, named as modules() names them."""
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:  # relative to the file's package: from .x, from ..x, from . import x
            base = [package] if package else []
            parts = base[:len(base) - (node.level - 1)]
        elif (node.module or "").startswith("helpers"):
            parts = []
        else:
            continue
        dotted = [*parts, *(node.module or "").split(".")]
        dotted = [part for part in dotted if part and part != "helpers"]
        if dotted and ".".join(dotted[:2]) in names:
            found.add(".".join(dotted[:2]))
        elif dotted and dotted[0] in names:
            found.add(dotted[0])
        else:  # from . import model, from .options import corruptions
            prefix = ".".join(dotted)
            found.update(f"{prefix}.{a.name}" if prefix else a.name for a in node.names)
    return found & names - {"__init__", f"{OPTIONS}.__init__"}


def strongly_connected(graph: Dict[str, Set[str]]) -> List[Set[str]]:
    """Tarjan's algorithm: the graph's strongly connected components."""
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return components


def layers(graph: Dict[str, Set[str]]) -> Dict[str, int]:
    components = strongly_connected(graph)
    component_of = {node: i for i, members in enumerate(components) for node in members}
    layer: Dict[int, int] = {}

    def depth(i: int) -> int:
        if i not in layer:
            below = {component_of[other] for node in components[i] for other in graph[node]} - {i}
            layer[i] = 1 + max((depth(j) for j in below), default=0)
        return layer[i]

    return {node: depth(component_of[node]) for node in graph}


def classes(path: str) -> List[dict]:
    tree = ast.parse(open(path).read())
    return [{"class": node.name, "lines": node.end_lineno - node.lineno + 1}
            for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]


def lines_of(path: str, names: Sequence[str]) -> int:
    """Lines of the top-level definitions and assignments named `names`."""
    tree = ast.parse(open(path).read())
    found = 0
    for node in tree.body:
        named = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
            [t.id for t in getattr(node, "targets", [getattr(node, "target", None)])
             if isinstance(t, ast.Name)]
        if set(named) & set(names):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            found += node.end_lineno - start + 1
    return found


def functions(path: str) -> List[dict]:
    """Every function and method with its lines (decorators included)."""
    tree = ast.parse(open(path).read())
    return [{"function": node.name, "lines": node.end_lineno - min(
        [node.lineno] + [d.lineno for d in node.decorator_list]) + 1}
        for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def raise_sites(path: str) -> Dict[str, int]:
    """`raise` statements that build a message (not a bare `raise`), and their lines."""
    tree = ast.parse(open(path).read())
    sites = [node for node in ast.walk(tree) if isinstance(node, ast.Raise) and node.exc is not None
             and isinstance(node.exc, ast.Call) and node.exc.args]
    return {"sites": len(sites), "lines": sum(n.end_lineno - n.lineno + 1 for n in sites)}


def measure(root: str, exclude: Sequence[str] = ()) -> dict:
    files = modules(root, exclude)
    names = set(files)
    lines = {name: sum(1 for _ in open(path)) for name, path in files.items()}
    graph = {name: imported(path, names, OPTIONS if name.startswith(OPTIONS + ".") else "")
             - {name} for name, path in files.items()}
    options = sorted(name for name in files if name.startswith(OPTIONS + "."))
    layer = layers(graph)
    circles = [sorted(c) for c in strongly_connected(graph) if len(c) > 1]
    largest = sorted((dict(module=name, **c) for name, path in files.items() for c in classes(path)),
                     key=lambda c: -c["lines"])
    longest = sorted((dict(module=name, **f) for name, path in files.items()
                      for f in functions(path)), key=lambda f: -f["lines"])
    raises = {name: raise_sites(path) for name, path in files.items()}
    total = sum(lines[name] for name in files if name not in options)
    method = sum(count for name, count in lines.items() if name in METHOD)
    by_definition = method - sum(lines_of(files[name], NOT_METHOD.get(name, ()))
                                 for name in files if name in METHOD)
    return {
        "lines": lines, "total_lines": total, "modules": len(files) - len(options),
        "options": options, "options_lines": sum(lines[name] for name in options),
        "import_layers": max(layer.values()), "layer_of": layer, "circles": circles,
        "imports": {name: sorted(graph[name]) for name in files},
        "largest_classes": largest[:5], "longest_functions": longest[:5],
        "raise_sites": sum(r["sites"] for r in raises.values()),
        "raise_lines": sum(r["lines"] for r in raises.values()),
        "method_modules": sorted(name for name in files if name in METHOD),
        "method_lines": method, "method_share": round(100 * method / total, 1),
        "method_lines_by_definition": by_definition,
        "method_share_by_definition": round(100 * by_definition / total, 1),
    }


def text(shape: dict) -> str:
    rows = [f"{'module':<24} {'lines':>6} {'layer':>6}  imports"]
    options = shape.get("options", [])
    for group in ([n for n in shape["lines"] if n not in options], options):
        for name in sorted(group, key=lambda n: (shape["layer_of"][n], n)):
            mark = " *" if name in shape["method_modules"] else ""
            rows.append(f"{name + mark:<24} {shape['lines'][name]:>6} "
                        f"{shape['layer_of'][name]:>6}  {', '.join(shape['imports'][name])}")
        if group is not options:
            rows.append(f"{'core':<24} {shape['total_lines']:>6}")
    if options:
        rows.append(f"{'options':<24} {shape['options_lines']:>6}")
    rows += ["",
             f"core modules {shape['modules']}, options {len(options)}; import layers "
             f"{shape['import_layers']}; circles {shape['circles'] or 'none'}",
             "largest classes: " + ", ".join(f"{c['module']}.{c['class']} {c['lines']}"
                                             for c in shape["largest_classes"][:3]),
             "longest functions: " + ", ".join(f"{f['module']}.{f['function']} {f['lines']}"
                                               for f in shape["longest_functions"][:3]),
             f"raise sites with a message: {shape['raise_sites']} ({shape['raise_lines']} lines)",
             f"method (* above): {shape['method_lines']} of the core's {shape['total_lines']} lines, "
             f"{shape['method_share']} %; without the definitions in them that are not the method "
             f"(NOT_METHOD): {shape['method_lines_by_definition']} lines, "
             f"{shape['method_share_by_definition']} %"]
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=ROOT, help="the checkout to measure")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--exclude", nargs="*", default=(), metavar="MODULE",
                        help="modules left out (a stage added later, measured apart)")
    arguments = parser.parse_args()
    shape = measure(arguments.root, arguments.exclude)
    print(json.dumps(shape, indent=2) if arguments.json else text(shape))
