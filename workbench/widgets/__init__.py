"""The workbench's notebook UI: a thin layer holding state and calling the core."""

from .workbench import Workbench

__all__ = ["Workbench"]
