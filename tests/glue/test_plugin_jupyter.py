"""glue-jupyter: a combined cutout file loaded into ``jglue()``, shown, selected and fetched into.

Headless like glue-jupyter's own tests: the application is built with ``jglue()`` and
IPython's ``display`` is a no-op, so no browser or kernel is needed; what a person would see
is read from the viewer's composite image (the RGBA array its image mark shows).
"""

import asyncio

import numpy as np
import pytest
from cutouts import DEC0, RA0, survey, write_combined

pytest.importorskip("glue_jupyter")

import IPython.display  # noqa: E402
from glue.core.link_helpers import LinkCollection  # noqa: E402

from glue_spherex import plugin  # noqa: E402
from glue_spherex.errors import SpherexInputError  # noqa: E402
from glue_spherex.plugin import fetch_into, is_spherex_data, sky_subset  # noqa: E402
from glue_spherex.plugin.links import CutoutLink  # noqa: E402

N = 24
#: M101 in the local archive and a time window with a few cutouts per band (as the Qt tests).
TARGET = "210.80227 54.34895"
WINDOW = (60832.50, 60832.64)


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    """What glue-jupyter's conftest does: widgets are not rendered anywhere."""
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    path = tmp_path_factory.mktemp("jupyter") / "m101_all.fits"
    write_combined(path, survey(N))
    return path


@pytest.fixture
def app():
    from glue_jupyter import jglue

    return jglue()


def _drawn(viewer, size=24):
    """RGBA of what the image viewer shows over the reference cutout's pixel grid."""
    rgba = viewer._composite(bounds=[(-0.5, size - 0.5, size), (-0.5, size - 0.5, size)])
    return np.zeros((size, size, 4)) if rgba is None else np.asarray(rgba)


def _cutout_links(dc):
    return [link for link in dc.external_links if isinstance(link, CutoutLink)]


def test_load_data_links_cutouts_with_wavelengths(app, combined):
    datasets = app.load_data(str(combined))
    dc = app.data_collection
    assert len(datasets) == N and all(is_spherex_data(d) for d in dc)
    # one star of links to the reference (N - 1), nothing pairwise
    links = _cutout_links(dc)
    assert len(links) == N - 1
    assert all(isinstance(link, LinkCollection) for link in dc.external_links)
    for d in datasets:
        labels = [c.label for c in d.main_components]
        assert "wavelength" in labels and "bandwidth" in labels
        wl = d.get_data(d.id["wavelength"])
        assert np.all(np.isfinite(wl)) and 0.7 < np.nanmedian(wl) < 5.1
    # every cutout can be expressed on the reference's pixel grid (the links carry pixels)
    ref = plugin.reference_cutout(dc)
    for d in datasets[:5]:
        x_on_ref = d.get_data(ref.pixel_component_ids[1])
        assert x_on_ref.shape == d.shape and np.isfinite(x_on_ref).any()


@pytest.mark.slow
def test_many_cutouts_get_the_indexed_link_manager(app, tmp_path):
    """jglue() makes its data collection before glue loads plugins, so it starts with glue's
    own LinkManager; once cutouts arrive the collection has the indexed one (linear linking)."""
    from glue_spherex.plugin.linkmanager import IndexedLinkManager

    path = tmp_path / "many.fits"
    write_combined(path, survey(150, size=12))
    datasets = app.load_data(str(path))
    dc = app.data_collection
    assert len(datasets) == 150
    assert isinstance(dc._link_manager, IndexedLinkManager)
    assert len(_cutout_links(dc)) == 149 and len(dc.external_links) == 149


def test_image_viewer_shows_two_cutouts(app, combined):
    datasets = app.load_data(str(combined))
    viewer = app.imshow(data=datasets[0])
    viewer.add_data(datasets[1])
    assert [layer.layer for layer in viewer.layers] == datasets[:2]
    assert all(layer.enabled for layer in viewer.layers)
    assert (_drawn(viewer)[..., 3] > 0).mean() > 0.9
    # the second cutout alone (reprojected onto the first through the links) is drawn too
    viewer.layers[0].state.visible = False
    shown = _drawn(viewer)
    assert (shown[..., 3] > 0).mean() > 0.3
    viewer.layers[1].state.visible = False
    assert (_drawn(viewer)[..., 3] > 0).sum() == 0


def test_sky_subset_propagates_to_every_cutout(app, combined):
    datasets = app.load_data(str(combined))
    group = sky_subset(app.data_collection, RA0, DEC0, 20 / 3600)
    assert len(group.subsets) == N
    counts = [int(s.to_mask().sum()) for s in group.subsets]
    assert all(c > 0 for c in counts)
    viewer = app.imshow(data=datasets[0])
    assert len(viewer.layers) == 2  # the cutout and its subset
    assert viewer.layers[1].enabled
    # glue's own subset from a condition on wavelength also reaches every cutout (links)
    wl = datasets[0].id["wavelength"]
    lo = float(np.nanmin(datasets[0].get_data(wl)))
    state = (wl >= lo) & (wl < lo + 0.01)
    group2 = app.data_collection.new_subset_group("band", state)
    assert len(group2.subsets) == N and group2.subsets[0].to_mask().any()


@pytest.mark.slow
def test_fetch_into_a_jupyter_session_on_its_event_loop(app, archive):
    """In a notebook the kernel's asyncio loop is running: fetch_into returns at once and
    the cutouts are added from that loop (the kernel's thread), in batches, linked."""
    dc = app.data_collection

    async def notebook_cell():
        run = fetch_into(app, TARGET, size="1 arcmin", time_range=WINDOW,
                         archive_url=archive.url, workers=4, batch_seconds=0.2)
        assert not run.done and len(dc) == 0  # nothing added inside the call
        for _ in range(600):
            if run.done:
                break
            await asyncio.sleep(0.05)
        return run

    run = asyncio.run(notebook_cell())
    assert run.done and not run.failures and run.error is None
    assert len(run.datasets) == len(run.table) == len(dc) >= 12
    assert run.batches >= 1
    assert len(_cutout_links(dc)) == len(dc) - 1
    assert sorted(d.meta["obs_id"] for d in dc) == sorted(str(o) for o in run.table["obs_id"])


def test_fetch_into_a_data_collection_from_a_script_blocks(archive):
    from glue.core import DataCollection

    dc = DataCollection()
    run = fetch_into(dc, TARGET, size="40 arcsec", bandpass=["D1", "D2"], time_range=WINDOW,
                     archive_url=archive.url, workers=2)
    assert run.done and len(dc) == len(run.table) > 0
    assert {d.meta["bandpass"] for d in dc} <= {"SPHEREx-D1", "SPHEREx-D2"}
    assert len(_cutout_links(dc)) == len(dc) - 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(size="2"), "needs a unit"),
    (dict(bandpass="D7"), "bandpass 'D7' is not accepted"),
    (dict(batch_seconds=0), "batch_seconds"),
    (dict(target=""), "enter a target"),
])
def test_fetch_into_bad_input_is_one_line(archive, kwargs, message):
    from glue.core import DataCollection

    args = dict(target=TARGET, size="1 arcmin", archive_url=archive.url) | kwargs
    target = args.pop("target")
    with pytest.raises(SpherexInputError, match=message) as info:
        fetch_into(DataCollection(), target, **args)
    assert "\n" not in str(info.value)
    with pytest.raises(SpherexInputError, match="glue application or DataCollection"):
        fetch_into(object(), TARGET, archive_url=archive.url)


@pytest.mark.slow
def test_fetch_into_in_a_real_jupyter_kernel(archive):
    """The same in an IPython kernel (what a notebook talks to): the cell returns before any
    cutout is added, and they arrive while the kernel is idle, between cells."""
    jupyter_client = pytest.importorskip("jupyter_client.manager")
    import os
    import time

    km, kc = jupyter_client.start_new_kernel(kernel_name="python3", env=dict(os.environ))
    out = []

    def cell(code):
        reply = kc.execute_interactive(code, timeout=240, output_hook=lambda msg: out.append(
            msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", out
        return out[-1].strip() if out else ""

    try:
        first = cell(
            "import IPython.display as d; d.display = lambda *a, **k: None\n"
            "from glue_jupyter import jglue\n"
            "from glue_spherex.plugin import fetch_into\n"
            "app = jglue()\n"
            f"run = fetch_into(app, {TARGET!r}, size='1 arcmin', time_range={WINDOW!r}, "
            f"archive_url={archive.url!r}, workers=4, batch_seconds=0.2)\n"
            "print(run.done, len(app.data_collection))")
        assert first == "False 0"
        for _ in range(120):
            time.sleep(0.5)  # the kernel is idle: its event loop adds the batches
            if cell("print(run.done)") == "True":
                break
        last = cell("dc = app.data_collection\n"
                    "print(len(dc), len(run.table), len(dc.external_links), run.batches, "
                    "len(run.failures))")
        n, rows, links, batches, failures = map(int, last.split())
        assert n == rows >= 12 and links == n - 1 and batches >= 1 and failures == 0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
