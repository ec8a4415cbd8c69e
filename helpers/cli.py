"""Run the notebook's pipeline from the command line, e.g. data-parallel under torchrun:

    python -m helpers.cli --epochs 75 --data_source folder --data_dir /data/cifar10-jpeg
    torchrun --nproc_per_node 4 -m helpers.cli --epochs 75 --batch_size 512

Every notebook parameter is an option of the same name (dashes or underscores), with the same
defaults, validation and outputs; the stages are the very functions the notebook calls.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")  # no screen: figures are only written to figures_dir
import matplotlib.pyplot as plt  # noqa: E402

from . import pipeline as stages  # noqa: E402
from .config import PARAMETER_NAMES, RunConfig, make_config  # noqa: E402
from .distributed import close_distributed  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> RunConfig:
    """Options named as the notebook's parameters; values are parsed and checked by make_config."""
    parser = argparse.ArgumentParser(prog="python -m helpers.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = RunConfig().to_dict()
    for name in PARAMETER_NAMES:
        flags = sorted({f"--{name}", f"--{name.replace('_', '-')}"})
        parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, metavar="VALUE",
                            help=f"default: {defaults[name]!r}")
    return make_config(**vars(parser.parse_args(argv)))


def main(argv: Optional[List[str]] = None) -> dict:
    """The notebook's stages in order; figures and files as the notebook writes them."""
    run = stages.start(parse_args(argv))
    try:
        if run.context.is_main:
            print(stages.describe(run))
        data = stages.load(run)
        stages.data_figures(run, data)
        network = stages.build_model(run)
        result = stages.train(run, data, network)
        stages.training_figures(run, result)
        test = stages.evaluate_test(run, data, result)
        stages.evaluation_figures(run, data, test)
        stages.error_figures(run, data, test)
        stages.submit(run, result)
        return stages.finish(run, data, result, test)
    finally:
        plt.close("all")
        close_distributed()


if __name__ == "__main__":
    try:
        main()
    except (ValueError, RuntimeError) as error:  # our errors carry the whole explanation
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
