"""Draw the glue screenshots of the documentation that the test suite does not produce.

Run from the repository root (headless; takes about a minute)::

    QT_QPA_PLATFORM=offscreen python docs/scripts/make_screenshots.py

It starts the local archive, fetches the 86 cutouts (0.1 deg, all six bands) of M101's first
week of visits, loads them into a GlueApplication with the SPHEREx plugin, as File ▸ Import Data ▸
SPHEREx cutouts… would, and writes into ``docs/_static``:

* ``glue_wavelength_subset.png`` -- four D3 cutouts side by side, each in its own image
  viewer, with the subset 'λ in [lo, hi)': a stripe that moves from cutout to cutout,
  because each pixel sees its own wavelength;
* ``glue_live_spectrum.png`` -- a sky circle on the star M101-S1 and the live spectrum it
  gives, one point per cutout;
* ``glue_export_dialog.png`` -- the dialog of Plugins ▸ Export SPHEREx cutouts as MEF…;
* ``demo_quicklook.png`` -- the quick-look image that ``glue-spherex demo`` draws.

``glue_import_linked.png`` and ``import_dialog.png`` come from the GUI test that drives the
import dialog: ``GLUE_SPHEREX_SCREENSHOT_DIR=docs/_static python -m pytest
tests/qt/test_qt_import.py``.
Each image is written to a temporary name and renamed, and the script checks that the
viewers actually drew something (so a blank screenshot fails loudly).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "_static")
M101 = (210.80227, 54.34895)
WEEK = (60832.5, 60840.0)


def wait(app, seconds):
    """Let Qt process events (timers, repaints) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def save(widget, name):
    image = widget.grab().toImage()
    rgb = _array(image)
    if rgb.std() < 10:
        raise SystemExit(f"{name}: the screenshot is blank")
    path = os.path.abspath(os.path.join(STATIC, name))
    tmp = path + ".part.png"
    if not image.save(tmp, "PNG"):
        raise SystemExit(f"{name}: could not write {tmp}")
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path)} ({image.width()}x{image.height()})")


def _array(image):
    from qtpy.QtGui import QImage

    image = image.convertToFormat(QImage.Format_RGB32)
    buf = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes())
    return buf.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, :image.width(), :3]


def fetch_products(archive):
    from glue_spherex.download.fetcher import fetch_cutouts
    from glue_spherex.irsa.core import SpherexClass

    table = SpherexClass(archive.url).query_region(M101, size="0.1deg", time=WEEK)
    results = list(fetch_cutouts(table, workers=4))
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} cutouts failed: {failed[0].reason}")
    return [r.product for r in sorted(results, key=lambda r: r.cutout_index)]


def make_app():
    from glue.config import settings
    from glue_qt.app import GlueApplication

    import glue_spherex.plugin
    import glue_spherex.qt

    glue_spherex.plugin.setup()
    glue_spherex.qt.setup()
    for label in ("Astronomy WCS", "SPHEREx sky"):
        settings.AUTOLINK[label] = "always_accept"
    app = GlueApplication()
    app.resize(1400, 860)
    app.show()
    return app


def _show(viewer, data, around=None, half_width=None):
    """Arcsinh stretch between the 2nd and 98th percentiles of the flux shown; optionally
    zoom on the sky position ``around`` (ra, dec)."""
    flux = np.asarray(data["flux"], float)
    if around is not None:
        x, y = data.coords.world_to_pixel_values(*around)
        viewer.state.x_min, viewer.state.x_max = x - half_width, x + half_width
        viewer.state.y_min, viewer.state.y_max = y - half_width, y + half_width
        x0, y0 = max(int(x - half_width), 0), max(int(y - half_width), 0)
        flux = flux[y0:int(y + half_width) + 1, x0:int(x + half_width) + 1]
    lo, hi = np.nanpercentile(flux, [2, 99])
    for layer in viewer.state.layers:
        if layer.layer is data:
            layer.stretch = "arcsinh"
            layer.v_min, layer.v_max = float(lo), float(hi)


def _margin(data, ra, dec):
    """Pixels between the sky position (ra, dec) and the nearest edge of ``data``."""
    x, y = data.coords.world_to_pixel_values(ra, dec)
    ny, nx = data.shape
    return min(x, y, nx - 1 - x, ny - 1 - y)


def live_spectrum_shot(app, qapp, datasets):
    from glue_qt.viewers.image import ImageViewer

    from glue_spherex.local_archive.synthetic import default_sky
    from glue_spherex.plugin import sky_subset
    from glue_spherex.plugin.live_spectrum import live_spectra
    from glue_spherex.qt.spectrum_action import open_live_spectrum

    star = default_sky().source("M101-S1")
    app.new_tab()
    d2 = max((d for d in datasets if d.meta["detector"] == 2),
             key=lambda d: _margin(d, star.ra, star.dec))
    image = app.new_data_viewer(ImageViewer, data=d2)
    _show(image, d2, around=(star.ra, star.dec), half_width=10)
    group = sky_subset(app.data_collection, star.ra, star.dec, 12 / 3600, label="M101-S1")
    scatter = open_live_spectrum(app, group)
    live = live_spectra(app.data_collection)[group]
    image.position, image.viewer_size = (0, 0), (470, 520)
    scatter.position, scatter.viewer_size = (475, 0), (600, 520)
    for layer in scatter.state.layers:
        layer.size = 7
    wait(qapp, 3.0)
    if live.n_computations < 1:
        raise SystemExit("the live spectrum was never computed")
    flux = np.asarray(live.spectrum["flux"], float)
    print(f"live spectrum: {np.isfinite(flux).sum()} of {flux.size} cutouts measured")
    save(app, "glue_live_spectrum.png")


def wavelength_subset_shot(app, qapp, datasets):
    from glue_qt.viewers.image import ImageViewer

    from glue_spherex.plugin import wavelength_subset

    # The first four D3 exposures: one pointing, stepped along the spectral direction, so
    # the same sky is seen at four slightly different wavelengths.
    d3 = sorted((d for d in datasets if d.meta["detector"] == 3),
                key=lambda d: d.meta["mjd_beg"])[:4]
    lo = round(float(d3[1].meta["central_wavelength"]), 3)
    hi = round(lo + 0.004, 3)
    for k, data in enumerate(d3):
        viewer = app.new_data_viewer(ImageViewer, data=data)
        _show(viewer, data)
        viewer.position = ((k % 2) * 540, (k // 2) * 380)
        viewer.viewer_size = (535, 375)
    group = wavelength_subset(app.data_collection, lo, hi)
    wait(qapp, 1.5)
    selected = [int(np.sum(s.to_mask())) for d in d3 for s in group.subsets if s.data is d]
    if not any(0 < n < d.size for n, d in zip(selected, d3)):
        raise SystemExit(f"wavelength subset {lo}-{hi} µm draws no stripe: {selected}")
    print(f"wavelength subset {group.label}: pixels selected per D3 cutout {selected}")
    save(app, "glue_wavelength_subset.png")
    app.data_collection.remove_subset_group(group)


def export_dialog_shot(app, qapp, datasets):
    from glue_spherex.qt.export_action import ExportDialog

    dialog = ExportDialog(datasets, parent=app)
    dialog.path_edit.setText("m101_session.fits")
    dialog.show()
    wait(qapp, 0.5)
    save(dialog, "glue_export_dialog.png")
    dialog.close()


def demo_quicklook():
    """Run ``glue-spherex demo`` in a scratch directory and keep its quick-look PNG."""
    import argparse
    import shutil
    import tempfile

    from glue_spherex.cli.demo import run

    with tempfile.TemporaryDirectory(prefix="glue-spherex-demo-") as tmp:
        if run(argparse.Namespace(out=tmp, workers=None)) != 0:
            raise SystemExit("glue-spherex demo failed")
        path = os.path.abspath(os.path.join(STATIC, "demo_quicklook.png"))
        shutil.copyfile(os.path.join(tmp, "m101_d2.png"), path + ".part.png")
        os.replace(path + ".part.png", path)
        print(f"wrote {os.path.relpath(path)}")


def main():
    from glue_qt.utils import get_qapp

    from glue_spherex.local_archive import LocalArchive
    from glue_spherex.plugin import products_to_data

    qapp = get_qapp()
    os.makedirs(STATIC, exist_ok=True)
    demo_quicklook()
    with LocalArchive() as archive:
        archive.wait_ready()
        products = fetch_products(archive)
    app = make_app()
    datasets = products_to_data(products)
    app.add_data(*datasets)
    wait(qapp, 1.0)
    wavelength_subset_shot(app, qapp, datasets)
    live_spectrum_shot(app, qapp, datasets)
    export_dialog_shot(app, qapp, datasets)
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
