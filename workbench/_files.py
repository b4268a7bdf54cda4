"""Writing artifacts atomically: a temporary path in the same folder, renamed into place on success."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import WorkbenchError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output(dest: str | Path, *, overwrite: bool = False):
    """Yield a temporary path next to `dest`; on success rename it to `dest`, on error remove it.

    A reader sees the old artifact or the new one, never a half-written one, even if the process dies.
    Refuses to replace an existing `dest` unless `overwrite`.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise WorkbenchError(f"{dest} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(f"cannot create the output folder {dest.parent}: {exc.strerror}") from exc
    if not os.access(dest.parent, os.W_OK):
        raise WorkbenchError(f"the output folder {dest.parent} is not writable; choose another folder")
    for stale in dest.parent.glob(f".{dest.stem}.partial-*{dest.suffix}"):
        _remove(stale)  # left by a process killed mid-write; never visible under the real name
    tmp = dest.with_name(f".{dest.stem}.partial-{uuid.uuid4().hex[:8]}{dest.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise WorkbenchError(f"nothing was written for {dest}")
        if tmp.is_dir() and dest.exists():
            # Directories (.mlpackage) cannot be replaced in one rename: swap the old one aside first.
            old = dest.with_name(f".{dest.stem}.old-{uuid.uuid4().hex[:8]}{dest.suffix}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            _remove(old)
        else:
            os.replace(tmp, dest)
    except OSError as exc:
        _remove(tmp)
        raise WorkbenchError(f"writing {dest} failed: {exc.strerror or exc}; nothing was replaced") from exc
    except BaseException:
        _remove(tmp)
        raise
