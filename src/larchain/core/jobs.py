"""Running a stage's Snakemake script: stderr (progress bars, warnings) and any error go to
the rule's log file, so a failed job's log says why it failed."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from typing import Any


def run_job(main: Callable[[Any], None], smk: Any) -> None:
    """Call ``main(smk)`` with stderr sent to ``smk.log[0]``; log the traceback on error."""
    with open(smk.log[0], "w") as log, contextlib.redirect_stderr(log):
        try:
            main(smk)
        except BaseException as exc:
            traceback.print_exc()
            log.write(f"\nERROR: {type(exc).__name__}: {exc}\n")
            raise
