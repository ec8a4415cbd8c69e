"""Helper modules for final-code.ipynb, one per stage; helpers/stages.py strings them together
for the notebook and for `python -m helpers.cli`. docs/method.md lists them in reading order.
"""
from .env import PackageError, in_notebook, require_matching_torchvision

try:
    require_matching_torchvision()
except PackageError as error:
    if in_notebook():
        raise  # shown as its one-line message
    raise SystemExit(f"error: {error}") from None  # one line, not a traceback
