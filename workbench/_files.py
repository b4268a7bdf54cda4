"""Deprecated: `workbench.files` (atomic writes are part of the format contract, so the module is public)."""

import warnings

warnings.warn("workbench._files is now workbench.files", DeprecationWarning, stacklevel=2)

from .files import *  # noqa: E402,F401,F403
from .files import _disk_full, _first_line, _remove  # noqa: E402,F401
