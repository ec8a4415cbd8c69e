"""The project's one error base: a mistake whose message is the whole explanation.

Every error the pipeline raises on purpose (a bad parameter, unusable data, a wrong checkpoint or
weights file, a diverging loss) says what is wrong and how to fix it. A traceback through the
helpers adds 70 lines and hides that sentence at the bottom, so in a notebook (and in papermill's
error report) these errors show as their message and the line that raised them.
"""
from __future__ import annotations

import os
import traceback


class ExplainedError(Exception):
    """Base of the errors whose message says what went wrong and what to do."""

    def _render_traceback_(self) -> list:
        # IPython calls this instead of formatting a traceback; papermill shows the same lines.
        lines = [f"{type(self).__name__}: {self}"]
        # The function that raised, not the small helpers that check and raise for it.
        frames = [f for f in traceback.extract_tb(self.__traceback__)
                  if not f.name.startswith("_require")]
        if frames:
            where = frames[-1]
            place = os.path.join(os.path.basename(os.path.dirname(where.filename)),
                                 os.path.basename(where.filename))
            lines.append(f"(raised in {place}, line {where.lineno}, in {where.name})")
        return lines
