"""Cutouts added to a session are listed by wavelength, under short, unique labels.

Against the local archive (:func:`fetch_into` into a bare DataCollection) and with cutouts
written to files (:func:`add_cutouts` batch by batch, next to other data)."""

import re

from cutouts import survey
from glue.core import Data, DataCollection

from glue_spherex.plugin import add_cutouts, fetch_into, is_spherex_data, link_cutouts
from glue_spherex.plugin.datasets import identity, product_to_data
from glue_spherex.plugin.links import CutoutLink
from glue_spherex.products.spectral_image import SpectralImage

TARGET = "210.80227 54.34895"
WINDOW = (60832.50, 60832.64)
#: A label a person reads in glue's data panel: band, wavelength, date, time or #index.
SHORT = re.compile(r"^D[1-6] \d\.\d{3} µm \d{4}-\d\d-\d\d( \d\d:\d\d| #\d+)( \(\d+\))?$")


def _wavelengths(datasets):
    return [d.meta["central_wavelength"] for d in datasets]


def _check_labels(dc):
    labels = [d.label for d in dc if is_spherex_data(d)]
    assert len(set(labels)) == len(labels)
    for data in dc:
        if is_spherex_data(data):
            assert len(data.label) <= 32 and SHORT.match(data.label), data.label
            assert data.meta["obs_id"] not in data.label  # the identity is in meta/tooltip
            assert data.meta["obs_id"] in identity(data)


def test_cutouts_fetched_into_a_session_are_listed_by_wavelength(archive):
    dc = DataCollection()
    run = fetch_into(dc, TARGET, size="1 arcmin", time_range=WINDOW, archive_url=archive.url,
                     workers=4, batch_seconds=0.05)
    assert run.done and not run.failures and len(dc) == len(run.table) >= 12
    lams = _wavelengths(dc)
    assert lams == sorted(lams) and lams[0] < 1.0 < 4.0 < lams[-1]  # D1 ... D6
    _check_labels(dc)
    assert dc[0].label.startswith("D1 ") and dc[len(dc) - 1].label.startswith("D6 ")

    # The same search again (e.g. after changing the release back): still sorted, and the
    # second copy of each exposure is told apart by ' (2)'.
    n = len(dc)
    again = fetch_into(dc, TARGET, size="1 arcmin", time_range=WINDOW,
                       archive_url=archive.url, workers=4)
    assert again.done and len(dc) == 2 * n
    assert _wavelengths(dc) == sorted(_wavelengths(dc))
    _check_labels(dc)
    assert sum(d.label.endswith(" (2)") for d in dc) == n
    assert sum(isinstance(link, CutoutLink) for link in dc.external_links) == 2 * n - 1


def test_batches_are_merged_in_wavelength_order_and_other_data_keep_their_place(tmp_path):
    cutouts = []
    for i, hdul in enumerate(survey(12)):
        path = tmp_path / f"cutout_{i}.fits"
        hdul.writeto(path)
        cutouts.append(product_to_data(SpectralImage.open(str(path))))
    other = Data(x=[1, 2, 3], label="a table")
    dc = DataCollection([other])
    first, second = cutouts[::2], cutouts[1::2]  # each batch spans the six bands
    assert add_cutouts(dc, first) == first
    assert dc[0] is other and _wavelengths(dc[1:]) == sorted(_wavelengths(first))
    added = add_cutouts(dc, second)
    assert added == second and len(dc) == 13
    assert dc[0] is other  # not a cutout: its place is kept
    spherex = [d for d in dc if is_spherex_data(d)]
    assert _wavelengths(spherex) == sorted(_wavelengths(cutouts))
    assert {id(d) for d in spherex} == {id(d) for d in cutouts}
    assert add_cutouts(dc, second) == [] and len(dc) == 13  # already there: nothing added
    _check_labels(dc)
    # linked to one reference, as link_cutouts alone would
    assert link_cutouts(dc) == []
    assert sum(isinstance(link, CutoutLink) for link in dc.external_links) == 11
