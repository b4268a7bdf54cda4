"""The workbench's notebook UI: a UI-free controller (`controller.py`, importable without Jupyter) and a thin
ipywidgets view of it (`view.py`)."""


def __getattr__(name):  # the view needs ipywidgets; the controller does not
    if name == "Workbench":
        from .view import Workbench

        return Workbench
    raise AttributeError(f"module 'workbench.widgets' has no attribute {name!r}")


__all__ = ["Workbench"]
