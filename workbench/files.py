"""Writing artifacts atomically: a temporary path in the same folder, renamed into place on success."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError, WorkbenchError, first_line

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def output_folder(folder: str | Path) -> Path:
    """Create `folder` if needed and check it can be written; raise WorkbenchError naming it if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(
            f"cannot create the output folder {folder}: {exc.strerror or exc}; choose another folder") from exc
    if not os.access(folder, os.W_OK):
        raise WorkbenchError(f"the output folder {folder} is not writable; choose another folder")
    return folder


def check_writable(folder: str | Path) -> None:
    """Raise WorkbenchError unless `folder` can be written or created; creates nothing (a probe folder is made
    and removed in the nearest folder that exists)."""
    import tempfile

    folder = Path(folder)
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".workbench-probe-"))
    except OSError as exc:
        raise WorkbenchError(f"cannot create the output folder {folder}: {exc.strerror or exc}; choose another "
                             "folder") from exc


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a full disk or quota. Copying a folder (shutil.Error) and
    converters' native writers report it only as text, so the text counts too."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return True
        if any(os.strerror(code) in str(exc) for code in _DISK_FULL):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        return str(exc.args[0][0][-1])  # copytree: a list of (src, dst, why); the first says it
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return first_line(exc)


@contextmanager
def atomic_output(dest: str | Path, *, overwrite: bool = False):
    """Yield a temporary path next to `dest`; on success rename it to `dest`, on error remove it.

    A reader sees the old artifact or the new one, never a half-written one, even if the process dies.
    Refuses to replace an existing `dest` unless `overwrite`. Raises WorkbenchError when the folder cannot
    be written or the disk fills (the old artifact is then kept and no temporary file is left).
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise WorkbenchError(f"{dest} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    output_folder(dest.parent)
    for stale in dest.parent.glob(f".{dest.stem}.partial-*{dest.suffix}"):
        _remove(stale)  # left by a process killed mid-write; never visible under the real name
    tmp = dest.with_name(f".{dest.stem}.partial-{uuid.uuid4().hex[:8]}{dest.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise WorkbenchError(f"nothing was written for {dest}")
        if tmp.is_dir() and dest.exists():
            # Directories (.mlpackage) cannot be replaced in one rename: swap the old one aside first,
            # and back if the new one cannot take its place.
            old = dest.with_name(f".{dest.stem}.old-{uuid.uuid4().hex[:8]}{dest.suffix}")
            os.replace(dest, old)
            try:
                os.replace(tmp, dest)
            except OSError:
                os.replace(old, dest)
                raise
            _remove(old)
        else:
            os.replace(tmp, dest)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, Exception) and _disk_full(exc):
            raise OutputError(
                f"writing {dest} failed: the disk is full ({_first_line(exc)}); free some space or choose "
                "another output folder. Nothing was replaced") from exc
        if isinstance(exc, OSError):
            raise OutputError(f"writing {dest} failed: {_first_line(exc)}; nothing was replaced") from exc
        raise
