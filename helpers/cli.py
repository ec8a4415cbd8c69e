"""Run the notebook's pipeline from the command line, e.g. data-parallel under torchrun:

    python -m helpers.cli --epochs 75 --data_source folder --data_dir /data/cifar10-jpeg
    torchrun --nproc_per_node 4 -m helpers.cli --epochs 75 --batch_size 512

Every notebook parameter is an option of the same name (dashes or underscores), with the same
defaults, validation and outputs; the stages are the very functions the notebook calls. On/off
options may be given bare (`--resume` means `--resume True`).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Iterable, List, Optional

import matplotlib

matplotlib.use("Agg")  # no screen: figures are only written to figures_dir
import matplotlib.pyplot as plt  # noqa: E402

from . import stages  # noqa: E402
from .distributed import close_distributed  # noqa: E402
from .settings import (PARAMETERS, ConfigError, Flag, RunConfig, make_config,  # noqa: E402
                       unknown_parameter_message)


def parse_args(argv: Optional[List[str]] = None) -> RunConfig:
    """Options named as the notebook's parameters; values are parsed and checked by make_config."""
    # No abbreviations: `--epoch 1` must not quietly mean `--epochs 1` (or anything else).
    parser = argparse.ArgumentParser(prog="python -m helpers.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    for name, declared in PARAMETERS.items():
        flags = sorted({f"--{name}", f"--{name.replace('_', '-')}"})
        on_off = isinstance(declared.kind, Flag)
        parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS,
                            metavar="True|False" if on_off else "VALUE",
                            nargs="?" if on_off else None, const="True" if on_off else None,
                            help=f"{declared.meaning} (default: {declared.default!r})")
    known, unknown = parser.parse_known_args(argv)
    options = [word.split("=")[0].lstrip("-").replace("-", "_")
               for word in unknown if word.startswith("--")]
    if unknown:
        raise ConfigError(unknown_parameter_message(options) if options
                          else f"unexpected argument(s) {unknown}: every value follows its --name")
    return make_config(**vars(known))


def where_written(run: stages.Run, figures: Iterable[str]) -> str:
    """The last lines of a run: its files and figures, by the folders they are in."""
    names = ["metrics.json", *(() if run.config.evaluate_only else
                               ("model.pt", "checkpoint.pt", "best.pt"))]
    names += ["model-int8.pt"] if run.config.quantize == "int8" else []
    names += ["submission.csv"] if run.config.kaggle_test_pkl is not None else []
    written = [name for name in names if os.path.exists(run.path(name))]
    lines = [f"files in {os.path.abspath(run.config.output_dir)}: {', '.join(written)}"]
    if figures:
        lines.append(f"figures in {os.path.abspath(run.config.figures_folder)}: "
                     f"{', '.join(f'{name}.png' for name in figures)}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> dict:
    """The notebook's stages in order; figures and files as the notebook writes them."""
    run = stages.start(parse_args(argv))
    try:
        if run.context.is_main:
            print(stages.heading(run).replace("**", "").replace("`", ""))
            print(stages.describe(run))
        data = stages.load(run)
        figures = stages.data_figures(run, data)
        network = stages.build_network(run)
        result = stages.load_trained(run, data) if run.config.evaluate_only else \
            stages.train(run, data, network)
        figures.update(stages.training_figures(run, data, result))
        test = stages.evaluate_test(run, data, result)
        if run.context.is_main:
            print(stages.quality_report(run, data, test))
        figures.update(stages.evaluation_figures(run, data, test))
        figures.update(stages.error_figures(run, data, test))
        shift = stages.evaluate_under_shift(run, data, result)
        if shift is not None:
            print(stages.shift_table(run, test, shift))
            figures.update(stages.shift_figures(run, data, test, shift))
        submitted = stages.submit(run, result)
        if run.context.is_main and run.config.kaggle_test_pkl is not None:
            print(submitted)
        metrics = stages.save_run(run, data, result, test)
        if run.context.is_main:
            print(where_written(run, figures))
        return metrics
    finally:
        plt.close("all")
        close_distributed()


if __name__ == "__main__":
    try:
        main()
    except (ValueError, RuntimeError) as error:  # our errors carry the whole explanation
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
