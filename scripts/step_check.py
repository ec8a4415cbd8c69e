"""Which training-step kinds passed the GPU step check (tests/test_step_gpu.py) in a JUnit report.

    python scripts/step_check.py results/gpu-step-check/junit.xml

prints the kinds, one per line; helpers/options/compiled_step.py's VERIFIED_ON_GPU must list
exactly these for the committed report (a test checks it), and scripts/gpu_session.sh asks it
which step to train with.
"""
from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from typing import Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.options.compiled_step import CAPTURED, COMPILED  # noqa: E402


def kinds_passed(junit_report: str) -> Tuple[str, ...]:
    """The step kinds whose every test_step_matches_eager* case (the step alone, and through
    the training loop) passed in a junit report of tests/test_step_gpu.py (none if there is no
    report)."""
    if not os.path.isfile(junit_report):
        return ()
    outcomes = {}
    for case in ElementTree.parse(junit_report).iter("testcase"):
        name = case.get("name", "")
        if name.startswith("test_step_matches_eager") and "[" in name:
            kind = CAPTURED if name.split("[", 1)[1].startswith("graph") else COMPILED
            passed = not any(child.tag in ("failure", "error", "skipped") for child in case)
            outcomes[kind] = outcomes.get(kind, True) and passed
    return tuple(kind for kind in (CAPTURED, COMPILED) if outcomes.get(kind))


if __name__ == "__main__":
    print("\n".join(kinds_passed(sys.argv[1])))
