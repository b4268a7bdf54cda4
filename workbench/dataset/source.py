"""Where a dataset's images come from, read lazily: a flat folder, a folder tree, a text file listing paths,
or an ImageFolder (one subfolder per class) whose folder names are the ground truth.

Only the paths are listed up front (a path is ~100 bytes: 50,000 of them are 5 MB); pixels are read one
batch at a time by `read`. An image that cannot be read is not an error for the run: `read` returns its
reason, and the run records it as skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError
from ..images import IMAGE_SUFFIXES, fit_image, load_image


@dataclass(frozen=True)
class Item:
    """One image of a dataset: its position in the full (unsubsampled) listing, its name (the path relative
    to the dataset's root, without suffix), its path, and its ground-truth class index (None: no label)."""

    index: int
    name: str
    path: str
    label: int | None = None


@dataclass
class ImageSource:
    """The images of a dataset, listed but not read. `labels`: the model's class names that `Item.label`
    indexes (set for an ImageFolder); `classes`: the folder name of each class present."""

    root: Path
    kind: str  # "folder", "tree", "list", "imagefolder"
    items: list[Item]
    labels: tuple[str, ...] | None = None
    classes: dict[int, str] = field(default_factory=dict)
    total: int = 0  # images listed before --every/--limit

    def __len__(self) -> int:
        return len(self.items)

    def describe(self) -> str:
        kept = f"{len(self.items)} of {self.total}" if self.total != len(self.items) else str(len(self.items))
        extra = f", {len(self.classes)} classes from folder names" if self.kind == "imagefolder" else ""
        return f"{kept} images ({self.kind} {self.root}{extra})"

    def batches(self, size: int, skip: set[int] | frozenset = frozenset()):
        """The items in batches of `size`, leaving out the indices in `skip` (done by an earlier run)."""
        todo = [i for i in self.items if i.index not in skip]
        for start in range(0, len(todo), size):
            yield todo[start:start + size]


def _key(name: str) -> str:
    """A class name as folder names and label files are compared: case, spaces, '_' and '-' ignored."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def _images_under(folder: Path, recursive: bool) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def open_source(source: str | Path | Sequence, *, labels: Sequence[str] | None = None,
                labels_from_folders: bool | None = None, limit: int | None = None,
                every: int | None = None) -> ImageSource:
    """List a dataset's images.

    source: a folder (flat, a tree, or an ImageFolder), a .txt file with one image path per line (relative
    to the file's folder; '#' starts a comment), or a list of paths. labels: the model's class names.
    labels_from_folders: True reads each image's class from its subfolder's name (an ImageFolder); None
    does so automatically when the folder holds no image itself, only class subfolders (two or more), and the
    model has labels; False never. Folder names are matched with the labels ignoring case, spaces, '_' and '-'.
    every: keep one image in K of the sorted listing (deterministic); limit: then keep the first N.
    Raises WorkbenchError for a missing source, a source with no image, or folders that match no label.
    """
    if every is not None and every < 1:
        raise WorkbenchError(f"--every {every}: keep one image in K, K >= 1")
    if limit is not None and limit < 1:
        raise WorkbenchError(f"--limit {limit}: the number of images to check, N >= 1")
    classes: dict[int, str] = {}
    folder_of: dict[Path, int] = {}
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.exists():
            raise WorkbenchError(f"image source {root} does not exist; give a folder, an ImageFolder or a .txt list")
        if root.is_file():
            paths, kind = _listed(root), "list"
            base = root.parent
        else:
            base = root
            top = _images_under(root, recursive=False)
            subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            paths = _images_under(root, recursive=True)
            imagefolder_layout = not top and len(subfolders) >= 2
            if labels_from_folders is None:
                labels_from_folders = imagefolder_layout and labels is not None
            if labels_from_folders:
                if not imagefolder_layout:
                    raise WorkbenchError(
                        f"{root} is not an ImageFolder: ground truth from folders needs one subfolder per class "
                        f"and no image at the top ({len(top)} there, {len(subfolders)} subfolders)")
                if labels is None:
                    raise WorkbenchError(
                        f"{root} has class subfolders, but the model has no class names to match them with: "
                        "give --labels FILE (one class name per line, in the model's order)")
                index = {_key(name): i for i, name in enumerate(labels)}
                unmatched = [p.name for p in subfolders if _key(p.name) not in index]
                if unmatched:
                    shown = ", ".join(unmatched[:8]) + (f" and {len(unmatched) - 8} more" if len(unmatched) > 8 else "")
                    raise WorkbenchError(
                        f"{len(unmatched)} of the {len(subfolders)} class folders in {root} match no label of the "
                        f"model: {shown} (its labels include {', '.join(list(labels)[:5])}); rename the folders to "
                        "the model's class names, give --labels FILE, or --no-labels-from-folders to check "
                        "agreement only")
                for p in subfolders:
                    folder_of[p] = index[_key(p.name)]
                    classes[index[_key(p.name)]] = p.name
                kind = "imagefolder"
            else:
                kind = "tree" if subfolders and len(paths) > len(top) else "folder"
    else:
        base, root, kind = None, Path("."), "list"
        paths = [Path(p) for p in source]
    if not paths:
        raise WorkbenchError(f"no image in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); add JPEG or PNG "
                             "photos")
    items, seen = [], set()
    for i, path in enumerate(paths):
        try:
            rel = path.relative_to(base) if base is not None else Path(path.name)
        except ValueError:
            rel = Path(path.name)
        name = rel.with_suffix("").as_posix()
        while name in seen:  # two paths with the same stem in a list: names stay unique
            name += "_"
        seen.add(name)
        label = folder_of.get(path.parent) if folder_of else None
        items.append(Item(i, name, str(path), label))
    total = len(items)
    if every:
        items = items[::every]
    if limit:
        items = items[:limit]
    return ImageSource(root, kind, items, tuple(labels) if kind == "imagefolder" else None, classes, total)


def _listed(path: Path) -> list[Path]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read the image list {path}: {exc}") from exc
    paths = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            p = Path(line)
            paths.append(p if p.is_absolute() else path.parent / p)
    return paths


def read(items: Sequence[Item], size, fit="crop", resize=None, interpolation="bilinear"):
    """Pixels of `items` as float32 (n, 3, H, W), the readable ones only, and for each item its reason or None.

    A missing, truncated or corrupt image does not stop the run: its reason (load_image's message) is returned
    in its place and it gets no pixels."""
    arrays, reasons = [], []
    for item in items:
        try:
            arrays.append(fit_image(load_image(item.path), size, fit, resize, interpolation))
            reasons.append(None)
        except WorkbenchError as exc:
            reasons.append(str(exc))
        except Exception as exc:  # anything a decoder throws on a bad file is that file's problem
            reasons.append(f"image {item.path} cannot be read ({type(exc).__name__}: {exc})")
    h, w = int(size[0]), int(size[1])
    pixels = (np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2), dtype=np.float32) if arrays
              else np.zeros((0, 3, h, w), np.float32))
    return pixels, reasons
