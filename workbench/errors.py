"""The workbench's one user-error family.

Everything a user can cause (a bad file, an unsupported op, a shape mismatch, a missing optional package)
raises `WorkbenchError`, whose message names the thing involved and says what to do. Anything else that
escapes is a bug in the workbench.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """A problem the user can fix; the message names the file, op, output or shape and the fix."""


class ConversionError(WorkbenchError):
    """A model could not be exported to a format; the message names the op or module and the known fixes."""


class OutputError(WorkbenchError):
    """An output could not be written (a full disk, no permission): a problem of the machine, not of a format."""


class RuntimeUnavailable(WorkbenchError):
    """A runtime cannot run on this machine (for example Core ML's own predict off macOS)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name when it has none: what a
    one-line error shows (an empty message must not hide the error behind an IndexError)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def require(module: str, install: str):
    """Import an optional heavy dependency, or raise a WorkbenchError that gives the install command."""
    import importlib
    import logging

    # coremltools logs a screenful of version notes on import (untested torch, no macOS runtime); the
    # workbench reports what matters itself.
    logger = logging.getLogger(module.split(".")[0])
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WorkbenchError(
            f"{module} is not installed ({exc}); install it with: pip install {install}"
        ) from exc
    finally:
        logger.setLevel(level)
