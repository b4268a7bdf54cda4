"""Deprecated name of `workbench.widgets.view` (the module shared its name with the package)."""

import warnings

warnings.warn("workbench.widgets.workbench is now workbench.widgets.view", DeprecationWarning, stacklevel=2)

from .view import *  # noqa: E402,F401,F403
from .view import COALESCE_SECONDS, Workbench  # noqa: E402,F401
