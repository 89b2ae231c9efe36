"""The result of a catalog run: a Parquet dataset written in parts, resumable, with a summary.

``OUT.parquet/`` holds ``part-NNNNNN.parquet`` files (one row per source x image), each
written to a temporary name and renamed, so a part is whole or absent; a rerun reads the
``s3_key`` column of the parts there and measures only the images not in any part, so it
never duplicates a row. Beside the parts, files that Parquet readers skip (their names start
with ``_``): ``_run.json`` (the options; a rerun must give the same), ``_plan.parquet`` (the
images of each source, so a rerun asks the archive nothing), ``_rejected.ecsv`` (catalog rows
refused, with reasons), ``_failed.ecsv`` (the images that failed after retries, with the
reason; they are not in a part, so the next run tries them again) and ``_summary.ecsv`` (one
row per source: points, coverage, median S/N).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..errors import SpherexInputError, SpherexOutputError
from ..fitsbytes.atomic import atomic_path, remove_stale_temporaries, write_bytes

__all__ = ["CatalogOutput", "COLUMNS", "UNITS"]

#: Output columns and their Arrow types.
COLUMNS = (("id", "string"), ("ra", "float64"), ("dec", "float64"), ("obs_id", "string"),
           ("detector", "int16"), ("release", "string"), ("version", "string"),
           ("s3_key", "string"), ("wavelength", "float64"), ("wavelength_mean", "float64"),
           ("bandwidth", "float64"), ("flux", "float64"), ("flux_err", "float64"),
           ("mjd", "float64"), ("unmasked_fraction", "float64"), ("n_pixels", "int32"),
           ("n_masked", "int32"), ("x", "float64"), ("y", "float64"),
           ("background", "float64"), ("pipeline", "int16"), ("status", "string"),
           ("reason", "string"))
#: Units of the columns that have one (also in the Parquet schema's metadata).
UNITS = {"ra": "deg", "dec": "deg", "wavelength": "um", "wavelength_mean": "um",
         "bandwidth": "um", "flux": "uJy", "flux_err": "uJy", "mjd": "d", "x": "pix",
         "y": "pix", "background": "MJy/sr"}


def _pa():
    import pyarrow as pa

    return pa


class CatalogOutput:
    """The output directory of one run; ``options`` must match a previous run's."""

    def __init__(self, path, options):
        self.path = Path(path)
        manifest = self.manifest_of(self.path)
        if not manifest.exists() and any(not p.name.startswith(".")
                                         for p in self.path.iterdir()):
            raise SpherexInputError(f"{self.path} is a directory that is not a catalog run "
                                    "(no _run.json); give another -o")
        self.resumed = manifest.exists()
        if self.resumed:
            try:
                before = json.loads(manifest.read_text())
            except (OSError, ValueError) as exc:
                raise SpherexInputError(f"{manifest} is unreadable ({exc}); give another -o") \
                    from None
            changed = sorted(k for k in set(before) | set(options)
                             if before.get(k) != options.get(k))
            if changed:
                said = ", ".join(f"{k} {before.get(k)!r} (now {options.get(k)!r})"
                                 for k in changed)
                raise SpherexInputError(f"{self.path} was made with other options: {said}; "
                                        "rerun with the same ones to resume, or give another -o")
        else:
            write_bytes(manifest, json.dumps(options, indent=1, sort_keys=True).encode())
        remove_stale_temporaries(self.path)  # a part being written when a run died
        self._next = 1 + max((int(p.stem.split("-")[1]) for p in self._parts()), default=0)

    @staticmethod
    def manifest_of(path):
        """Make the directory ``path`` if need be (its parent must exist); its ``_run.json``
        path, which a run locks (:func:`~glue_spherex.fitsbytes.atomic.output_lock`)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise SpherexInputError(f"{path} exists and is not a directory; the result is a "
                                    "Parquet dataset directory -- give another -o")
        if not path.parent.is_dir():
            raise SpherexOutputError(f"cannot write {path}: directory {path.parent} does not "
                                     "exist")
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise SpherexOutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        return path / "_run.json"

    def _parts(self):
        return sorted(p for p in self.path.glob("part-*.parquet")
                      if p.stem.split("-")[1].isdigit())

    # -- plan ------------------------------------------------------------------------------

    def load_plan(self):
        """The plan saved by an earlier run, or None."""
        path = self.path / "_plan.parquet"
        return Table.read(path, format="parquet") if path.exists() else None

    def save_plan(self, plan):
        with atomic_path(self.path / "_plan.parquet") as tmp:
            plan.write(tmp, format="parquet")

    def save_rejected(self, rejected):
        with atomic_path(self.path / "_rejected.ecsv") as tmp:
            rejected.write(tmp, format="ascii.ecsv")

    # -- parts -----------------------------------------------------------------------------

    def done_keys(self):
        """The images (``s3_key``) already in a part."""
        import pyarrow.parquet as pq

        done = set()
        for part in self._parts():
            done.update(pq.read_table(part, columns=["s3_key"]).column(0).to_pylist())
        return done

    def write_part(self, rows):
        """Write ``rows`` (dicts of :data:`COLUMNS`) as the next part, atomically."""
        if not rows:
            return None
        import pyarrow.parquet as pq

        pa = _pa()
        arrays = []
        for name, kind in COLUMNS:
            values = [r.get(name) for r in rows]
            if kind == "string":
                values = ["" if v is None else str(v) for v in values]
            arrays.append(pa.array(values, type=getattr(pa, kind)()))
        schema = pa.schema([pa.field(n, getattr(pa, k)(),
                                     metadata={"unit": UNITS[n]} if n in UNITS else None)
                            for n, k in COLUMNS])
        table = pa.Table.from_arrays(arrays, schema=schema)
        path = self.path / f"part-{self._next:06d}.parquet"
        self._next += 1
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path

    def write_failed(self, rows):
        """Replace ``_failed.ecsv`` by the failures of this run (one row per source x image)."""
        names = ("s3_key", "obs_id", "detector", "id", "ra", "dec", "reason")
        table = Table({n: [r.get(n) for r in rows] for n in names} if rows else
                      {n: np.array([], dtype=float if n in ("ra", "dec") else
                                   int if n == "detector" else str) for n in names})
        with atomic_path(self.path / "_failed.ecsv") as tmp:
            table.write(tmp, format="ascii.ecsv")

    def read(self):
        """Every row of every part, as an astropy Table (units on the columns)."""
        import pyarrow.parquet as pq

        parts = self._parts()
        if not parts:
            return Table(names=[n for n, _ in COLUMNS])
        import pyarrow as pa

        table = pa.concat_tables([pq.read_table(p) for p in parts])
        out = Table({name: table.column(name).to_numpy(zero_copy_only=False)
                     for name, _ in COLUMNS})
        for name, unit in UNITS.items():
            out[name].unit = unit
        return out

    # -- summary ---------------------------------------------------------------------------

    def write_summary(self, sources, failed=()):
        """One row per source of ``sources`` (id, ra, dec): images measured, points with a
        flux, images that failed (``failed``: their rows), wavelength coverage, median S/N;
        written to ``_summary.ecsv`` and returned."""
        rows = self.read()
        ids = np.asarray(sources["id"], dtype=str)
        index = {s: i for i, s in enumerate(ids.tolist())}
        n = len(ids)
        images, points, failed_count = np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
        lo, hi, snr = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        if len(rows):
            rid = np.asarray(rows["id"], dtype=str)
            status = np.asarray(rows["status"], dtype=str)
            wl = np.asarray(rows["wavelength"], float)
            s = np.asarray(rows["flux"], float) / np.asarray(rows["flux_err"], float)
            order = np.argsort(rid, kind="stable")
            bounds = np.flatnonzero(np.r_[True, rid[order][1:] != rid[order][:-1], True])
            for a, b in zip(bounds[:-1], bounds[1:]):
                sel = order[a:b]
                i = index.get(rid[sel[0]])
                if i is None:
                    continue
                ok = sel[status[sel] == "ok"]
                images[i], points[i] = len(sel), len(ok)
                if len(ok):
                    lo[i], hi[i] = np.nanmin(wl[ok]), np.nanmax(wl[ok])
                    snr[i] = np.nanmedian(s[ok])
        for row in failed:
            i = index.get(str(row["id"]))
            if i is not None:
                failed_count[i] += 1
        summary = Table({"id": ids, "ra": np.asarray(sources["ra"], float),
                         "dec": np.asarray(sources["dec"], float), "images": images,
                         "points": points, "failed": failed_count, "wavelength_min": lo,
                         "wavelength_max": hi, "median_snr": snr})
        for name, unit in (("ra", "deg"), ("dec", "deg"), ("wavelength_min", "um"),
                           ("wavelength_max", "um")):
            summary[name].unit = unit
        with atomic_path(self.path / "_summary.ecsv") as tmp:
            summary.write(tmp, format="ascii.ecsv")
        return summary
