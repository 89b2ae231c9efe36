"""Is appending to a combined cutout file I/O-bound? 700 cutouts of ~5.3 MB, as in a download.

Times, in one run and on the same disk:

* raw:    writing the 700 cutouts' bytes to one file with ``f.write`` and an ``fsync``;
* writer: ``CombinedWriter.add(i, cutout_bytes)`` for the same 700 byte strings (parse the
  FITS bytes, rename the six extensions, compute the central wavelength at the target,
  append) and ``close()`` (rewrite CUTOUT_INFO, fsync, rename).

and prints the ratio writer/raw (1.0 = nothing but I/O) and the CPU time per add. Needs
about 4 GB of free space in the temporary directory (removed afterwards). Run:

    .venv/bin/python bench/bench_combined.py [--n 700] [--dir /tmp]
"""

import argparse
import io
import os
import resource
import tempfile
import time
from importlib import resources

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from glue_spherex.products.combined import CombinedWriter, read_combined
from glue_spherex.products.spectral_image import SpectralImage
from glue_spherex.products.wavelength import reference_table


def real_header(name):
    text = resources.files("glue_spherex.data").joinpath(name).read_text()
    return fits.Header.fromstring(text, sep="\n")


def cutout_bytes(seed):
    """A 117x117 D3 cutout (the real IRSA cutout headers) with the full 121-plane PSF cube."""
    rng = np.random.default_rng(seed)
    image_hdr, flags_hdr = real_header("qr2_cutout_image_header.txt"), real_header(
        "qr2_flags_header.txt")
    shape = (117, 117)
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["VERSION"] = "6.4+psffix1"
    for name, data, hdr in (
        ("IMAGE", rng.normal(1, 0.1, shape).astype(np.float32), image_hdr),
        ("FLAGS", rng.integers(0, 1 << 22, shape, dtype=np.int32), flags_hdr),
        ("VARIANCE", rng.uniform(0.01, 0.02, shape).astype(np.float32), image_hdr),
        ("ZODI", np.full(shape, 0.5, np.float32), image_hdr),
    ):
        hdus.append(fits.ImageHDU(data, header=hdr.copy(), name=name))
    hdus.append(fits.ImageHDU(rng.random((121, 101, 101), dtype=np.float32), name="PSF"))
    hdus.append(reference_table(3).to_hdu())
    out = io.BytesIO()
    fits.HDUList(hdus).writeto(out)
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=700)
    parser.add_argument("--dir", default=None, help="directory for the test files")
    args = parser.parse_args()

    # a few distinct payloads, reused round-robin (building 700 would dominate the run)
    payloads = [cutout_bytes(seed) for seed in range(8)]
    size = len(payloads[0])
    target = SpectralImage.open(payloads[0]).wcs.pixel_to_world(58, 58)
    target = SkyCoord(target.ra, target.dec)
    planned = [{"cutout_index": i, "access_url": f"http://127.0.0.1/ibe/cutout/{i}"}
               for i in range(1, args.n + 1)]
    print(f"{args.n} cutouts of {size / 1e6:.2f} MB = {args.n * size / 1e9:.2f} GB per file")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        raw_path = os.path.join(tmp, "raw.bin")
        t0 = time.perf_counter()
        with open(raw_path, "wb") as f:
            for i in range(args.n):
                f.write(payloads[i % len(payloads)])
            f.flush()
            os.fsync(f.fileno())
        t_raw = time.perf_counter() - t0
        os.unlink(raw_path)

        path = os.path.join(tmp, "combined.fits")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu0, t0 = time.process_time(), time.perf_counter()
        with CombinedWriter(path, planned, target=target) as writer:
            for i in range(1, args.n + 1):
                writer.add(i, payloads[i % len(payloads)])
        t_writer = time.perf_counter() - t0
        cpu_per_add = (time.process_time() - cpu0) / args.n
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        final = os.path.getsize(path)

        t0 = time.perf_counter()
        table, images = read_combined(path)
        wl = [float(im.pixel_to_wave(0, 0)[0]) for im in images]
        t_read = time.perf_counter() - t0
        if len(images) != args.n or not np.all(np.isfinite(wl)):
            raise SystemExit("read-back failed")
        for im in images:
            im.close()

    print(f"raw write + fsync:          {t_raw:7.2f} s  ({args.n * size / t_raw / 1e6:6.0f} MB/s)")
    print(f"CombinedWriter add + close: {t_writer:7.2f} s  ({final / t_writer / 1e6:6.0f} MB/s), "
          f"CPU {cpu_per_add * 1e3:.1f} ms per add, peak RSS grew {(rss1 - rss0) / 1024:.0f} MB")
    print(f"read_combined + one wavelength per cutout: {t_read:.2f} s for {args.n} cutouts")
    print(f"combined: {args.n} appends take {t_writer / t_raw:.2f}x the raw I/O time "
          f"({final / 1e9:.2f} GB written)")


if __name__ == "__main__":
    main()
