"""Running a stage's Snakemake script: stderr (progress bars, warnings) and any error go to
the rule's log file, so a failed job's log says why it failed."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def remove_stale_temporaries(outputs: Any) -> list[Path]:
    """Delete ``.*.tmp`` files that a killed job left beside its outputs (see
    :func:`larchain.core.artifacts.atomic_path`); returns what was removed."""
    removed = []
    for d in {Path(o).parent for o in outputs}:
        if d.is_dir():
            for f in d.glob(".*.tmp"):
                f.unlink(missing_ok=True)
                removed.append(f)
    return removed


def run_job(main: Callable[[Any], None], smk: Any) -> None:
    """Call ``main(smk)`` with stderr sent to ``smk.log[0]``; log the traceback on error.
    Temporaries left by an earlier, killed attempt are removed first."""
    with open(smk.log[0], "w") as log, contextlib.redirect_stderr(log):
        for f in remove_stale_temporaries(smk.output):
            print(f"removed stale temporary {f}", file=log)
        try:
            main(smk)
        except BaseException as exc:
            traceback.print_exc()
            log.write(f"\nERROR: {type(exc).__name__}: {exc}\n")
            raise
