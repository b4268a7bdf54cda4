"""Per-image results on disk as they come: one SQLite file in the run's folder (sqlite3, the standard library).

Each batch is one transaction (images, every candidate's figures, the batch's worst outputs), committed
before the next batch starts, in WAL mode: a run killed at any moment leaves every finished batch and no
half of one, and `--resume` skips exactly the images already there, so nothing is computed twice and
nothing is lost. The run's fingerprint (model, preprocessing, candidates, source, subsample) is kept
with it: resuming a different run is refused rather than mixing two.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError

FILE = "dataset.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS images (idx INTEGER PRIMARY KEY, name TEXT, label INTEGER, status TEXT,
    reason TEXT, ref_class INTEGER);
CREATE TABLE IF NOT EXISTS results (idx INTEGER, candidate TEXT, status TEXT, reason TEXT, passed INTEGER,
    max_abs REAL, mean_abs REAL, max_rel REAL, psnr REAL, cosine REAL, figure REAL, top5 REAL,
    cand_class INTEGER, PRIMARY KEY (idx, candidate));
CREATE TABLE IF NOT EXISTS worst (candidate TEXT, idx INTEGER, figure REAL, psnr REAL, pixels BLOB,
    ref BLOB, out BLOB, PRIMARY KEY (candidate, idx));
"""

RESULT_COLUMNS = ("idx", "candidate", "status", "reason", "passed", "max_abs", "mean_abs", "max_rel", "psnr",
                  "cosine", "figure", "top5", "cand_class")


def to_blob(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def from_blob(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def _real(v):
    """A float as SQLite keeps it: NaN becomes NULL (inf is kept)."""
    return None if v is None or v != v else float(v)


class Store:
    """The run's SQLite file. resume: continue the run there (same fingerprint); overwrite: start it afresh;
    neither, with results there: WorkbenchError saying which flag to give."""

    def __init__(self, folder: str | Path, fingerprint: dict, *, resume: bool = False, overwrite: bool = False,
                 worst_n: int = 8):
        self.path = Path(folder) / FILE
        self.worst_n = worst_n
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not resume:
            if not overwrite and self._rows(self.path):
                raise WorkbenchError(f"{self.path} holds the results of an earlier run: give --resume to continue it "
                                     "or --overwrite to start again")
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise WorkbenchError(f"cannot open the results file {self.path}: {exc}; choose another --out") from exc
        key = json.dumps(fingerprint, sort_keys=True, default=str)
        row = self.db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (key,))
        elif row[0] != key:
            old, new = json.loads(row[0]), json.loads(key)
            differ = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            raise WorkbenchError(f"{self.path} is the result of another run (it differs in {', '.join(differ)}): "
                                 "resume it with the same arguments, or give --overwrite to start again")

    @staticmethod
    def _rows(path: Path) -> int:
        try:
            with sqlite3.connect(path) as db:
                return db.execute("SELECT count(*) FROM images").fetchone()[0]
        except sqlite3.Error:
            return 0

    def done(self) -> set[int]:
        """The indices of the images already recorded."""
        return {r[0] for r in self.db.execute("SELECT idx FROM images")}

    def write(self, batch) -> None:
        """One batch's records (a `run.BatchResult`), in one transaction; INSERT, not REPLACE: an image
        recorded twice is a bug and fails loudly."""
        with self.db:
            self.db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)", batch.images)
            self.db.executemany(f"INSERT INTO results VALUES ({', '.join('?' * len(RESULT_COLUMNS))})",
                                [tuple(_real(v) if isinstance(v, float) else v for v in r) for r in batch.results])
            for cand, rows in batch.worst.items():
                self.db.executemany("INSERT OR REPLACE INTO worst VALUES (?, ?, ?, ?, ?, ?, ?)",
                                    [(cand, idx, _real(fig), _real(psnr), to_blob(px), to_blob(ref), to_blob(out))
                                     for idx, fig, psnr, px, ref, out in rows])
                self.db.execute("DELETE FROM worst WHERE candidate=? AND idx NOT IN (SELECT idx FROM worst WHERE "
                                "candidate=? ORDER BY figure IS NULL DESC, figure, psnr, idx LIMIT ?)",
                                (cand, cand, self.worst_n))

    def close(self) -> None:
        self.db.close()
