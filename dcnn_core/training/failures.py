"""What a person is told when their training fails: one sentence with what to do; the details go to the server log.

An error's own text may hold a server path, a file name or an environment variable meant for the
organiser, so it never reaches the page: the run's message comes from the kind of error, and the
traceback is written to the log (and kept in the run's ``details`` for the headless client).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

OUT_OF_MEMORY = ("The server ran out of memory for this design: try a smaller batch size, fewer filters, or pooling "
                 "earlier. Your other runs are safe.")  # fmt: skip
FILE_PROBLEM = ("The server could not read or write a file this run needs; the organiser can see why in the server log. "
                "Your other runs are safe.")  # fmt: skip
DESIGN_PROBLEM = ("This design could not be trained on this data (a layer's shape or setting does not fit): change it on "
                  "the Model page.")  # fmt: skip
UNEXPECTED = "Training failed unexpectedly; the organiser can see why in the server log. Your other runs are safe."


def user_message(error: BaseException) -> str:
    """One sentence for the person whose run failed with ``error`` — never the error's own text."""
    name = type(error).__name__
    if isinstance(error, MemoryError) or name in ("ResourceExhaustedError", "OutOfMemoryError"):
        return OUT_OF_MEMORY
    if isinstance(error, OSError):
        return FILE_PROBLEM
    if isinstance(error, ValueError) or name in ("InvalidArgumentError", "UnimplementedError"):
        return DESIGN_PROBLEM
    return UNEXPECTED


def log_failure(run_id: str, error: BaseException, details: str) -> None:
    """The organiser's side: the run, the error and its traceback, in the server log."""
    log.error("Run %s failed: %s: %s\n%s", run_id, type(error).__name__, error, details)


__all__ = ["DESIGN_PROBLEM", "FILE_PROBLEM", "OUT_OF_MEMORY", "UNEXPECTED", "log_failure", "user_message"]
