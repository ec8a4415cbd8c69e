"""The shape of helpers/: lines per module, import layers and circles, the largest classes, the
refusal sites, and the method's share of the lines.

    python scripts/code_shape.py            # a table per measure
    python scripts/code_shape.py --json     # the same as JSON (results/redesign/ keeps both)
    python scripts/code_shape.py --root DIR # another checkout, e.g. one made with `git worktree`

Definitions (the same for every checkout measured):
* lines: physical lines of each helpers/*.py file, as `wc -l` counts them.
* import layers: a module that imports no other helpers module is layer 1; any other is one more
  than the highest layer it imports. Imports inside functions count. Modules on an import circle
  share one layer (the circle is reported).
* the method: the modules that compute what the project is about: the network, the recipes
  (optimizer, schedule and augmentation settings), the augmentation, the training step, the
  epoch loop with its optimizer and schedule, and the evaluation metrics. METHOD below lists them
  for the layouts before and after the redesign; a module not there is not method. Counted two
  ways: the modules whole, and without the top-level definitions in them that are not the
  method (NOT_METHOD, listed by name).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
from typing import Dict, List, Sequence, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Before the redesign: model, recipes, augment, step, training (optimizer, schedule, EMA,
# train_one_epoch, the loop) and evaluation (intervals, ECE, per-class scores). After it the
# same stages keep these names, with the compiled steps in fast_step and the evaluation in
# evaluate.
METHOD = ("model", "recipes", "augment", "step", "fast_step", "training", "evaluation", "evaluate")
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
    folder = os.path.join(root, "helpers")
    return {name[:-3]: os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.endswith(".py") and name[:-3] not in exclude}


def imported(path: str, names: Set[str]) -> Set[str]:
    """The helpers modules a file imports, at its top or inside functions."""
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import model
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers"):
            parts = node.module.split(".")
            found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
    return found & names - {"__init__"}


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
    graph = {name: imported(path, names) - {name} for name, path in files.items()}
    layer = layers(graph)
    circles = [sorted(c) for c in strongly_connected(graph) if len(c) > 1]
    largest = sorted((dict(module=name, **c) for name, path in files.items() for c in classes(path)),
                     key=lambda c: -c["lines"])
    raises = {name: raise_sites(path) for name, path in files.items()}
    total = sum(lines.values())
    method = sum(count for name, count in lines.items() if name in METHOD)
    by_definition = method - sum(lines_of(files[name], NOT_METHOD.get(name, ()))
                                 for name in files if name in METHOD)
    return {
        "lines": lines, "total_lines": total, "modules": len(files),
        "import_layers": max(layer.values()), "layer_of": layer, "circles": circles,
        "imports": {name: sorted(graph[name]) for name in files},
        "largest_classes": largest[:5],
        "raise_sites": sum(r["sites"] for r in raises.values()),
        "raise_lines": sum(r["lines"] for r in raises.values()),
        "method_modules": sorted(name for name in files if name in METHOD),
        "method_lines": method, "method_share": round(100 * method / total, 1),
        "method_lines_by_definition": by_definition,
        "method_share_by_definition": round(100 * by_definition / total, 1),
    }


def text(shape: dict) -> str:
    rows = [f"{'module':<14} {'lines':>6} {'layer':>6}  imports"]
    for name in sorted(shape["lines"], key=lambda n: (shape["layer_of"][n], n)):
        mark = " *" if name in shape["method_modules"] else ""
        rows.append(f"{name + mark:<14} {shape['lines'][name]:>6} {shape['layer_of'][name]:>6}  "
                    f"{', '.join(shape['imports'][name])}")
    rows += [f"{'total':<14} {shape['total_lines']:>6}", "",
             f"modules {shape['modules']}; import layers {shape['import_layers']}; circles "
             f"{shape['circles'] or 'none'}",
             "largest classes: " + ", ".join(f"{c['module']}.{c['class']} {c['lines']}"
                                             for c in shape["largest_classes"][:3]),
             f"raise sites with a message: {shape['raise_sites']} ({shape['raise_lines']} lines)",
             f"method (* above): {shape['method_lines']} of {shape['total_lines']} lines, "
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
