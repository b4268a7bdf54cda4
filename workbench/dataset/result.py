"""A dataset run's result, read back from its store: figures per format and variant, the worst images, the
class flips, accuracy against the folders' labels, and a picture of the worst images.

    result.table()          one row per format/variant (list of dicts; views.table_html draws it)
    result.worst(5)         the five worst images of each, by the task's figure
    result.flips()          PyTorch's class -> the format's, counted, with the images' names
    result.accuracy()       with ground truth: PyTorch's, each format's, the difference, overall and per class
    result.to_pandas()      one row per image and format (needs pandas)
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError
from .run import figure_of
from .store import FILE, RESULT_COLUMNS, from_blob

FIGURE_NAMES = {"top1_agreement": "top-1 agreement", "miou": "mIoU", "psnr": "PSNR dB"}


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def _quantiles(values, qs=(50, 95, 99)) -> dict[str, float | None]:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not v.size:
        return {f"p{q}": None for q in qs} | {"max": None}
    return {f"p{q}": float(np.percentile(v, q)) for q in qs} | {"max": float(v.max())}


@dataclass
class DatasetResult:
    """What a dataset run found; `folder` holds its dataset.sqlite and pictures."""

    folder: Path
    task: object
    images: list[dict]
    rows: dict[str, list[dict]]  # candidate -> per-image rows
    labels: tuple[str, ...] | None = None
    ground_truth: bool = False
    notes: list[str] = field(default_factory=list)
    report: object = None  # the sample-image check (Session.check's Report) the artifacts come from
    thresholds: dict | None = None
    computed: int = 0  # images computed by this call (the rest came from an earlier, resumed run)
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1
    source: str = ""
    pictures: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def load(cls, folder, *, session, source=None, report=None, notes=(), thresholds=None, computed=0,
             seconds=0.0, engine="local", workers=1, candidates=None, pictures=True) -> DatasetResult:
        """The run recorded in `folder` (a finished run, or one still going: what its store holds so far).
        pictures: also write worst_<candidate>.png (False for a quick look while a run goes on)."""
        folder = Path(folder)
        path = folder / FILE
        if not path.exists():
            raise WorkbenchError(f"no dataset run in {folder} (no {FILE})")
        db = sqlite3.connect(path)
        try:
            wanted = {i.index for i in source.items} if source is not None else None
            images = [dict(zip(("idx", "name", "label", "status", "reason", "ref_class"), r))
                      for r in db.execute("SELECT * FROM images ORDER BY idx")]
            if wanted is not None:
                images = [i for i in images if i["idx"] in wanted]
            keep = {i["idx"] for i in images}
            rows: dict[str, list[dict]] = defaultdict(list)
            for r in db.execute("SELECT * FROM results ORDER BY idx"):
                d = dict(zip(RESULT_COLUMNS, r))
                if d["idx"] in keep:
                    rows[d["candidate"]].append(d)
        finally:
            db.close()
        if candidates is None and report is not None:
            candidates = [c for n, r in report.formats.items() for c in [n, *[f"{n} {v}" for v in r.variants]]
                          if c in rows]
        order = list(dict.fromkeys([*(candidates or []), *rows]))
        names = {i["idx"]: i["name"] for i in images}
        for cand in order:
            for d in rows[cand]:
                d["image"] = names[d["idx"]]
        result = cls(folder, session.task, images, {c: rows[c] for c in order}, session.labels,
                     any(i["label"] is not None for i in images), list(notes), report, dict(thresholds or {}),
                     computed, seconds, engine, workers, source.describe() if source is not None else "")
        if pictures:
            result.pictures = result.save_pictures(session)
        return result

    # -- figures -----------------------------------------------------------------------------------
    @property
    def figure(self) -> str:
        return figure_of(self.task)

    @property
    def candidates(self) -> list[str]:
        return list(self.rows)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(image, reason) of every image that could not be read."""
        return [(i["name"], i["reason"]) for i in self.images if i["status"] == "skipped"]

    def failed(self, candidate: str) -> list[tuple[str, str]]:
        """(image, reason) of the images `candidate` failed on."""
        return [(r["image"], r["reason"]) for r in self.rows[candidate] if r["status"] == "failed"]

    def _label(self, k) -> str:
        if k is None:
            return "-"
        return self.labels[k] if self.labels and 0 <= k < len(self.labels) else str(k)

    def summary(self, candidate: str) -> dict:
        """The figures of one format or variant over the dataset."""
        rows = self.rows[candidate]
        ok = [r for r in rows if r["status"] == "ok"]
        figs = np.asarray([r["figure"] if r["figure"] is not None else np.nan for r in ok], np.float64)
        figs = np.where(np.isnan(figs), -np.inf, figs)
        d = {"images": len(rows), "checked": len(ok), "failed": len(rows) - len(ok),
             "within_tolerance": sum(1 for r in ok if r["passed"]), "figure": self.figure}
        if figs.size:
            d[self.figure] = {"mean": float(np.mean(figs)), "p1": float(np.percentile(figs, 1)),
                              "p5": float(np.percentile(figs, 5)), "worst": float(figs.min())}
        if self.figure == "top1_agreement":
            t5 = [r["top5"] for r in ok if r["top5"] is not None]
            d["top5_agreement"] = float(np.mean(t5)) if t5 else None
        d["max_abs"] = _quantiles(r["max_abs"] for r in ok)
        d["max_rel"] = _quantiles(r["max_rel"] for r in ok)
        psnr = [r["psnr"] for r in ok if r["psnr"] is not None]
        d["psnr_worst"] = float(min(psnr)) if psnr else None
        d["flips"] = sum(f["count"] for f in self.flips(candidate))
        if self.ground_truth:
            d["accuracy"] = self.accuracy()[candidate]
        failures = self._below(d, candidate)
        d["threshold_failures"] = failures
        return d

    def _below(self, d: dict, candidate: str) -> list[str]:
        from ..session import below

        figures = {}
        if "top1_agreement" in d:
            figures["top1_agreement"] = d["top1_agreement"]["mean"]
        if "miou" in d:
            figures["miou"] = d["miou"]["worst"]
        if d.get("psnr_worst") is not None:
            figures["psnr"] = d["psnr_worst"]
        return below(figures, self.thresholds, candidate)

    def worst(self, n: int = 5, candidate: str | None = None) -> list[dict]:
        """The `n` worst images of each candidate (or of `candidate`) by the task's figure, then PSNR."""
        out = []
        for cand in [candidate] if candidate else self.candidates:
            ok = [r for r in self.rows[cand] if r["status"] == "ok"]
            ok.sort(key=lambda r: (-math.inf if r["figure"] is None else r["figure"],
                                   -math.inf if r["psnr"] is None else r["psnr"], r["idx"]))
            refs = {i["idx"]: i["ref_class"] for i in self.images}
            for r in ok[:n]:
                row = {"candidate": cand, "image": r["image"], self.figure: r["figure"], "psnr": r["psnr"],
                       "max_abs": r["max_abs"], "passed": bool(r["passed"])}
                if self.figure == "top1_agreement":
                    row |= {"pytorch": self._label(refs[r["idx"]]), "format": self._label(r["cand_class"])}
                out.append(row)
        return out

    def flips(self, candidate: str | None = None) -> list[dict]:
        """Class flips (classifiers): PyTorch's class -> the candidate's, most frequent first, with image names."""
        refs = {i["idx"]: i["ref_class"] for i in self.images}
        out = []
        for cand in [candidate] if candidate else self.candidates:
            pairs: dict[tuple, list[str]] = defaultdict(list)
            for r in self.rows[cand]:
                rc = refs.get(r["idx"])
                if r["status"] == "ok" and r["cand_class"] is not None and rc is not None and r["cand_class"] != rc:
                    pairs[(rc, r["cand_class"])].append(r["image"])
            for (a, b), names in sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                out.append({"candidate": cand, "pytorch": self._label(a), "format": self._label(b),
                            "count": len(names), "images": names})
        return out

    def accuracy(self) -> dict:
        """With ground truth (an ImageFolder): {"pytorch": {...}, candidate: {...}}, each with `overall`, `images`
        and `per_class` ({class: {"accuracy", "images"}}); a candidate's also `pytorch` (PyTorch's on the same
        images) and `difference` (the candidate's minus PyTorch's), overall and per class."""
        if not self.ground_truth:
            return {}
        imgs = {i["idx"]: i for i in self.images if i["status"] == "ok" and i["label"] is not None}

        def score(pairs):  # [(label, predicted)]
            by_class = defaultdict(list)
            for lab, pred in pairs:
                by_class[lab].append(pred == lab)
            total = [c for v in by_class.values() for c in v]
            return (float(np.mean(total)) if total else None, len(total),
                    {self._label(k): {"accuracy": float(np.mean(v)), "images": len(v)}
                     for k, v in sorted(by_class.items())})

        overall, n, per = score((i["label"], i["ref_class"]) for i in imgs.values())
        result = {"pytorch": {"overall": overall, "images": n, "per_class": per}}
        for cand in self.candidates:
            ok = [r for r in self.rows[cand] if r["status"] == "ok" and r["idx"] in imgs]
            c_all, c_n, c_per = score((imgs[r["idx"]]["label"], r["cand_class"]) for r in ok)
            p_all, _, p_per = score((imgs[r["idx"]]["label"], imgs[r["idx"]]["ref_class"]) for r in ok)
            result[cand] = {"overall": c_all, "images": c_n, "pytorch": p_all,
                            "difference": None if c_all is None else c_all - p_all,
                            "per_class": {k: {**v, "pytorch": p_per[k]["accuracy"],
                                              "difference": v["accuracy"] - p_per[k]["accuracy"]}
                                          for k, v in c_per.items()}}
        return result

    @property
    def passed(self) -> bool:
        """Every format's artifact checked every image within its tolerance, no candidate failed on an image,
        none missed a threshold, and none was left out (variants are judged by thresholds only)."""
        formats = set(self.report.formats) if self.report is not None else set(self.candidates)
        for cand in self.candidates:
            s = self.summary(cand)
            if s["failed"] or s["threshold_failures"]:
                return False
            if cand in formats and s["within_tolerance"] < s["checked"]:
                return False
        return bool(self.candidates) and not any("not checked" in n for n in self.notes)

    def table(self) -> list[dict]:
        """One row per format and variant: the figures a summary shows."""
        rows = []
        for cand in self.candidates:
            s = self.summary(cand)
            f = s.get(self.figure, {})
            row = {"candidate": cand, "checked": s["checked"], "within tolerance": s["within_tolerance"],
                   "failed": s["failed"], f"{FIGURE_NAMES[self.figure]} mean": f.get("mean"),
                   "p1": f.get("p1"), "p5": f.get("p5"), "worst": f.get("worst"),
                   "max abs p99": s["max_abs"]["p99"], "max abs": s["max_abs"]["max"],
                   "max rel p99": s["max_rel"]["p99"]}
            if self.figure == "top1_agreement":
                row["top-5 agreement"] = s["top5_agreement"]
                row["flips"] = s["flips"]
            if self.ground_truth:
                acc = s["accuracy"]
                row |= {"accuracy": acc["overall"], "PyTorch accuracy": acc["pytorch"],
                        "difference": acc["difference"]}
            rows.append(row)
        return rows

    def to_pandas(self):
        """One row per image and candidate (with the image's label and PyTorch's class): a pandas DataFrame."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise WorkbenchError("to_pandas needs pandas: pip install pandas (or 'workbench[ray]')") from exc
        imgs = {i["idx"]: i for i in self.images}
        records = []
        for cand, rows in self.rows.items():
            for r in rows:
                i = imgs[r["idx"]]
                records.append({"image": r["image"], "candidate": cand, "status": r["status"],
                                "reason": r["reason"], "passed": None if r["passed"] is None else bool(r["passed"]),
                                self.figure: r["figure"], "psnr": r["psnr"], "max_abs": r["max_abs"],
                                "mean_abs": r["mean_abs"], "max_rel": r["max_rel"], "cosine": r["cosine"],
                                "label": self._label(i["label"]) if i["label"] is not None else None,
                                "pytorch_class": self._label(i["ref_class"]) if i["ref_class"] is not None else None,
                                "format_class": self._label(r["cand_class"]) if r["cand_class"] is not None else None})
        return pd.DataFrame.from_records(records)

    def to_dict(self, worst: int = 5) -> dict:
        return _finite({
            "passed": self.passed, "source": self.source, "task": self.task.name, "figure": self.figure,
            "images": len(self.images), "computed": self.computed, "seconds": self.seconds,
            "images_per_second": self.computed / self.seconds if self.seconds and self.computed else None,
            "engine": self.engine, "workers": self.workers, "ground_truth": self.ground_truth,
            "store": str(self.folder / FILE), "notes": self.notes,
            "skipped": [{"image": n, "reason": r} for n, r in self.skipped],
            "pytorch_accuracy": self.accuracy().get("pytorch") if self.ground_truth else None,
            "candidates": {c: {**self.summary(c), "worst": self.worst(worst, c), "flips": self.flips(c)[:20],
                               "failed_images": [{"image": n, "reason": r} for n, r in self.failed(c)],
                               "picture": str(self.pictures[c]) if c in self.pictures else None}
                           for c in self.candidates}})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # -- pictures -----------------------------------------------------------------------------------
    def worst_outputs(self, candidate: str):
        """The kept outputs of `candidate`'s worst images: (names, pixels (N,3,H,W), reference, output) of the
        main output, worst first; None when none was kept."""
        db = sqlite3.connect(self.folder / FILE)
        try:
            got = db.execute("SELECT idx, pixels, ref, out FROM worst WHERE candidate=? ORDER BY figure IS NULL "
                             "DESC, figure, psnr, idx", (candidate,)).fetchall()
        finally:
            db.close()
        names = {i["idx"]: i["name"] for i in self.images}
        got = [g for g in got if g[0] in names]
        if not got:
            return None
        return ([names[g[0]] for g in got], np.stack([from_blob(g[1]) for g in got]).astype(np.float32),
                np.stack([from_blob(g[2]) for g in got]), np.stack([from_blob(g[3]) for g in got]))

    def picture(self, candidate: str, session=None) -> bytes | None:
        """PNG: the worst images of `candidate`, PyTorch beside it, as the widget draws them."""
        from ..views import side_by_side

        kept = self.worst_outputs(candidate)
        if kept is None:
            return None
        names, pixels, ref, out = kept
        main = session.task.main_output(session.outputs) if session is not None else "output"
        return side_by_side(pixels, names, {main: ref}, {candidate: {main: out}}, self.task, count=None)

    def save_pictures(self, session=None) -> dict[str, Path]:
        """worst_<candidate>.png in the run's folder, one per candidate."""
        paths = {}
        for cand in self.candidates:
            try:
                png = self.picture(cand, session)
            except Exception as exc:  # a picture must not cost the run's figures
                self.notes.append(f"{cand}: no picture of the worst images ({type(exc).__name__}: {exc})")
                continue
            if png:
                path = self.folder / f"worst_{cand.replace(' ', '_')}.png"
                path.write_bytes(png)
                paths[cand] = path
        return paths

    def render(self, worst: int = 5) -> str:
        """The result as text, for the CLI."""
        lines = [f"dataset  {self.source}",
                 f"task     {self.task.name} (figure per image: {FIGURE_NAMES[self.figure]})",
                 f"run      {self.computed} images computed in {self.seconds:.1f} s ({self.engine} engine, "
                 f"{self.workers} worker{'s' if self.workers > 1 else ''}); results in {self.folder / FILE}"]
        lines += [f"note     {n}" for n in self.notes]
        if self.skipped:
            lines.append(f"skipped  {len(self.skipped)} unreadable images:")
            lines += [f"         {n}: {r}" for n, r in self.skipped[:10]]
            if len(self.skipped) > 10:
                lines.append(f"         ... and {len(self.skipped) - 10} more (in the JSON and the store)")
        if self.ground_truth:
            p = self.accuracy()["pytorch"]
            lines.append(f"accuracy PyTorch {p['overall']:.4f} on {p['images']} labelled images")
        for row in self.table():
            lines.append("")
            lines.append("  ".join(f"{k} {_cell(v)}" for k, v in row.items()))
            cand = row["candidate"]
            for w in self.worst(worst, cand):
                extra = f" ({w['pytorch']} -> {w['format']})" if "pytorch" in w else ""
                lines.append(f"    worst {w['image']}: {FIGURE_NAMES[self.figure]} {_cell(w[self.figure])}, PSNR "
                             f"{_cell(w['psnr'])}{extra}")
            for f in self.flips(cand)[:5]:
                shown = ", ".join(f["images"][:3]) + (" ..." if len(f["images"]) > 3 else "")
                lines.append(f"    flip  {f['pytorch']} -> {f['format']}: {f['count']} ({shown})")
            for n, r in self.failed(cand)[:5]:
                lines.append(f"    failed on {n}: {r}")
            lines += [f"    {t}" for t in self.summary(cand)["threshold_failures"]]
            if cand in self.pictures:
                lines.append(f"    picture {self.pictures[cand]}")
        lines += ["", "dataset: " + ("PASS" if self.passed else "FAIL")]
        return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return str(v)
