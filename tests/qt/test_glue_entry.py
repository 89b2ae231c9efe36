"""However SPHEREx cutouts reach a glue session, the collection does the indexed bookkeeping.

Every way a collection comes to hold cutouts -- ``GlueApplication()`` from a script (its
collection is made before glue loads plugins), ``GlueApplication(dc)`` with a collection
made earlier, the ``glue`` launcher, ``app.load_data``, a file dropped on the window,
``app.add_data(path)``, a restored ``.glu`` and the import dialog -- ends with the
collection's link manager an IndexedLinkManager, no all-pairs pixel-alignment checks, the
tree model batched, the cutouts linked in a star and a selection reaching all of them. The
script cases run in fresh processes with their own HOME (so their own plugins.cfg), loading
plugins the way glue does; one case undoes the patch to show the check can fail.

Also: glue's 'Astronomy WCS' autolinker is wrapped whichever is registered first, and is not
imported when the user switched it off in the Plugin Manager.
"""

import json
import os
import subprocess
import sys

import pytest
import qt_support
from cutouts import survey, write_combined
from qt_support import WINDOW, fetch, fill, open_import_dialog, search

pytest.importorskip("glue_qt")

glue_app = qt_support.glue_app
window_size = qt_support.window_size

N = 16

PRELUDE = r"""
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import glue.core.link_manager as glue_lm
import glue_spherex.plugin.linkmanager as our_lm

checks = [0]
_glue_check = glue_lm.equivalent_pixel_cids

def counted(reference, target):
    checks[0] += 1
    return _glue_check(reference, target)

glue_lm.equivalent_pixel_cids = our_lm.equivalent_pixel_cids = counted

from glue.config import settings
from glue_qt.utils import get_qapp
get_qapp()
settings.AUTOLINK["Astronomy WCS"] = "always_ignore"   # never a modal dialog

def report(case, app, before):
    from glue.core.autolinking import find_possible_links
    from glue.core.roi import RectangularROI
    from glue.core.subset import RoiSubsetState
    from glue_spherex.plugin import patches
    from glue_spherex.plugin.links import reference_cutout
    dc = app.data_collection
    pair_checks = checks[0] - before
    ref = reference_cutout(dc)
    group = dc.new_subset_group(case, RoiSubsetState(
        ref.pixel_component_ids[1], ref.pixel_component_ids[0],
        RectangularROI(4.5, 15.5, 6.5, 18.5)))
    model = app._layer_widget.ui.layerTree.model()
    print("RESULT" + json.dumps(dict(
        case=case, n=len(dc), manager=type(dc._link_manager).__name__,
        pair_checks=pair_checks, links=len(dc.external_links),
        masks=sum(bool(s.to_mask().any()) for s in group.subsets),
        model=type(model).__name__, suggestions=sorted(find_possible_links(dc)),
        applied=patches.applied())), flush=True)
"""

ENTRIES = PRELUDE + r"""
path, glu = sys.argv[1], sys.argv[2]
from glue.core import DataCollection
from glue.core.data_factories import load_data
from glue_qt.app import GlueApplication

# a script following glue's own pattern: the application (and its collection) first
before = checks[0]
app = GlueApplication()
assert type(app.data_collection._link_manager).__name__ == "LinkManager"  # glue's, so far
app.add_data(*load_data(path))
report("GlueApplication() then add_data(*load_data)", app, before)
app.save_session(glu)
app.close()

# a collection made before glue-spherex is loaded, given to the application
before = checks[0]
app = GlueApplication(DataCollection())
app.add_data(*load_data(path))
report("GlueApplication(dc) then add_data", app, before)
app.close()

# what the `glue file` launcher does: plugins, an application on a new session, the files
from glue.core import Session
from glue.main import load_plugins
from glue_qt.main import load_data_files
load_plugins(require_qt_plugins=True)
before = checks[0]
dc = DataCollection()
app = GlueApplication(session=Session(data_collection=dc, hub=dc.hub))
app.add_datasets(load_data_files([path]))
report("glue launcher", app, before)
app.close()

before = checks[0]
app = GlueApplication()
app.load_data(path)
report("app.load_data(path)", app, before)
app.close()

before = checks[0]
app = GlueApplication()
app.add_data(path)
report("app.add_data(path)", app, before)
app.close()

from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
from qtpy.QtGui import QDropEvent
before = checks[0]
app = GlueApplication()
mime = QMimeData()
mime.setUrls([QUrl.fromLocalFile(path)])
app.dropEvent(QDropEvent(QPointF(20, 20), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
report("file dropped on the window", app, before)
app.close()

# the control: without the patch, the collection made first keeps glue's manager while the
# cutouts arrive (link_cutouts switches it afterwards), and glue checks all pairs
from glue_spherex.plugin import patches
with patches.without("indexed-link-manager"):
    before = checks[0]
    app = GlueApplication()
    app.add_data(*load_data(path))
report("control: patch undone", app, before)
app.close()
"""

RESTORE = PRELUDE + r"""
from glue_qt.app import GlueApplication
before = checks[0]
app = GlueApplication.restore_session(sys.argv[1], show=False)
report("restored .glu", app, before)
app.close()
"""


def run(script, *args, home, cfg=None, timeout=400):
    (home / ".glue").mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        (home / ".glue" / "plugins.cfg").write_text(cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLUE", "PYTEST"))}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line[len("RESULT"):]) for line in proc.stdout.splitlines()
            if line.startswith("RESULT")]


@pytest.fixture(scope="module")
def entry_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("entry")
    path = tmp / "cutouts.fits"
    write_combined(path, survey(N, seed=11))
    glu = tmp / "session.glu"
    results = run(ENTRIES, path, glu, home=tmp / "home")
    results += run(RESTORE, glu, home=tmp / "home")
    return {r["case"]: r for r in results}


CASES = ["GlueApplication() then add_data(*load_data)", "GlueApplication(dc) then add_data",
         "glue launcher", "app.load_data(path)", "app.add_data(path)",
         "file dropped on the window", "restored .glu"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.slow
def test_every_entry_path_gets_the_indexed_link_manager(entry_results, case):
    result = entry_results[case]
    assert result["n"] == N
    assert result["manager"] == "IndexedLinkManager"
    assert result["pair_checks"] == 0  # glue's LinkManager: one per ordered pair, per update
    assert result["links"] == N - 1  # a star, not N(N-1)/2
    assert result["masks"] == N  # the selection on the reference reaches every cutout
    assert result["model"] == "BatchedDataCollectionModel"
    assert result["suggestions"] == []  # no pairwise WCS suggestions, no dialog
    assert {"indexed-link-manager", "component-lookup", "session-names", "wcs-autolinker",
            "batched-tree", "restored-grids"} <= set(result["applied"])


@pytest.mark.slow
def test_without_the_patch_glue_checks_all_pairs(entry_results):
    result = entry_results["control: patch undone"]
    # still correct -- link_cutouts switches the manager when it links -- but adding the
    # cutouts went through glue's all-pairs pixel-alignment check first
    assert result["manager"] == "IndexedLinkManager" and result["masks"] == N
    assert result["pair_checks"] >= N * (N - 1)


def test_import_dialog_gives_its_collection_the_indexed_manager(glue_app, archive, qtbot,
                                                                monkeypatch, window_size):
    import glue.core.link_manager as glue_lm
    from glue.core.link_manager import LinkManager

    import glue_spherex.plugin.linkmanager as our_lm

    checks = []
    glue_check = glue_lm.equivalent_pixel_cids

    def counted(reference, target):
        checks.append(1)
        return glue_check(reference, target)

    monkeypatch.setattr(glue_lm, "equivalent_pixel_cids", counted)
    monkeypatch.setattr(our_lm, "equivalent_pixel_cids", counted)
    dc = glue_app.data_collection
    assert type(dc._link_manager) is LinkManager
    dialog = open_import_dialog(glue_app)
    fill(dialog, archive.url, size="1", window=WINDOW)
    search(qtbot, dialog)
    fetch(qtbot, dialog)
    assert len(dc) == window_size
    assert isinstance(dc._link_manager, our_lm.IndexedLinkManager)
    assert len(checks) == 0
    assert len(dc.external_links) == window_size - 1


GLUE_REGISTERS_LATER = r"""
import sys
from glue.config import autolinker
import glue_spherex.plugin
glue_spherex.plugin.setup()
assert "glue.plugins.wcs_autolinking.wcs_autolinking" not in sys.modules
assert "Astronomy WCS" not in dict(autolinker.members)
import glue.plugins.wcs_autolinking.wcs_autolinking  # registers it now, after our setup
assert dict(autolinker.members)["Astronomy WCS"]._spherex_wrapped is not None
glue_spherex.plugin.teardown()
assert getattr(dict(autolinker.members)["Astronomy WCS"], "_spherex_wrapped", None) is None
print("RESULT{}")
"""

SWITCHED_OFF = r"""
import json, sys
from glue.config import autolinker
from glue.main import load_plugins
load_plugins()
print("RESULT" + json.dumps(dict(
    imported="glue.plugins.wcs_autolinking.wcs_autolinking" in sys.modules,
    labels=[label for label, _ in autolinker.members],
    wrapped=[getattr(f, "_spherex_wrapped", None) is not None for label, f in autolinker.members
             if label == "Astronomy WCS"])))
"""


@pytest.mark.slow
def test_wcs_autolinker_wrapped_when_glue_registers_it_after_us(tmp_path):
    assert run(GLUE_REGISTERS_LATER, home=tmp_path) == [{}]


@pytest.mark.parametrize("switch", [0, 1])
@pytest.mark.slow
def test_wcs_autolinking_plugin_switched_off_is_not_imported(tmp_path, switch):
    (result,) = run(SWITCHED_OFF, home=tmp_path,
                    cfg=f"[plugins]\nwcs_autolinking = {switch}\n")
    assert result["imported"] == bool(switch)
    assert ("Astronomy WCS" in result["labels"]) == bool(switch)
    assert result["wrapped"] == ([True] if switch else [])
    assert "SPHEREx sky" in result["labels"]


RESTORE_CORE = r"""
import json, sys
from glue.core.state import GlueUnSerializer
dc = GlueUnSerializer.loads(open(sys.argv[1]).read()).object("__main__")
from glue_spherex.plugin import patches
print("RESULT" + json.dumps(dict(manager=type(dc._link_manager).__name__, n=len(dc),
                                 applied=patches.applied())))
"""


@pytest.mark.parametrize("switch", [0, 1])
@pytest.mark.slow
def test_session_restored_in_a_script_respects_the_plugin_switch(tmp_path, switch):
    from glue.core import DataCollection
    from glue.core.state import GlueSerializer

    from glue_spherex.plugin import link_cutouts, products_to_data
    from glue_spherex.products.spectral_image import SpectralImage

    dc = DataCollection(products_to_data([SpectralImage.open(h) for h in survey(4, seed=2)]))
    link_cutouts(dc)
    session = tmp_path / "cutouts.glu"
    session.write_text(GlueSerializer(dc).dumps())
    (result,) = run(RESTORE_CORE, session, home=tmp_path / "home",
                    cfg=f"[plugins]\nglue_spherex = {switch}\n")
    assert result["n"] == 4
    # restored before any plugin is loaded: set up unless switched off in the Plugin Manager
    assert result["manager"] == ("IndexedLinkManager" if switch else "LinkManager")
    assert ("indexed-link-manager" in result["applied"]) == bool(switch)
