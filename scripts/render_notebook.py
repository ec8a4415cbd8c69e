"""Render final-code.ipynb with a run's outputs, keeping it runnable as it is.

    python scripts/render_notebook.py -p model_weights results/reference-seed0/model.pt \
        -p data_source folder -p data_dir data/cifar10-official -p output_dir outputs/rendering
    python scripts/render_notebook.py --executed results/RUN/final-code.executed.ipynb

The first form runs the notebook with papermill (every argument after the options is passed to
papermill); the second takes a notebook papermill has already executed (a GPU run's). Either way
papermill's injected-parameters cell is removed before the notebook is written: the outputs stay,
the cell after *Parameters* says which run they are and the parameters it was given, and Run All,
`jupyter nbconvert --execute` and papermill then run the *Parameters* cell as it stands, not the
rendering's values. Local paths papermill records in the metadata are dropped too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "final-code.ipynb")
INJECTED = "injected-parameters"


def is_injected(cell: dict) -> bool:
    return INJECTED in cell.get("metadata", {}).get("tags", [])


def sources(notebook: dict) -> List[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"] if not is_injected(cell)]


def without_injected_parameters(executed: dict, template: dict) -> dict:
    """`executed` without papermill's injected cell and local paths; it must have been run
    from `template`'s cells, or its outputs would sit under other code."""
    if sources(executed) != sources(template):
        raise SystemExit("the executed notebook's cells differ from final-code.ipynb's: it was "
                         "run from another version of the notebook; render it again")
    rendered = dict(executed, cells=[cell for cell in executed["cells"] if not is_injected(cell)])
    papermill = dict(rendered["metadata"].get("papermill", {}))
    for local in ("input_path", "output_path", "environment_variables"):
        papermill.pop(local, None)
    rendered["metadata"] = {**rendered["metadata"], "papermill": papermill}
    return rendered


def execute(papermill_arguments: List[str]) -> dict:
    """final-code.ipynb run by papermill in the repository with the given -p/-r arguments."""
    with tempfile.TemporaryDirectory() as scratch:
        executed = os.path.join(scratch, "executed.ipynb")
        subprocess.run([sys.executable, "-m", "papermill", NOTEBOOK, executed, "--cwd", ROOT,
                        "--log-output", *papermill_arguments], check=True)
        with open(executed) as file:
            return json.load(file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executed", help="a notebook papermill executed from final-code.ipynb")
    parser.add_argument("--out", default=NOTEBOOK, help="where to write (default: final-code.ipynb)")
    args, papermill_arguments = parser.parse_known_args()
    with open(NOTEBOOK) as file:
        template = json.load(file)
    if args.executed:
        with open(args.executed) as file:
            executed = json.load(file)
    else:
        executed = execute(papermill_arguments)
    rendered = without_injected_parameters(executed, template)
    with open(args.out, "w") as file:
        json.dump(rendered, file, indent=1, ensure_ascii=False)
        file.write("\n")
    print(f"wrote {args.out}: the outputs of that run, without its injected-parameters cell")


if __name__ == "__main__":
    main()
