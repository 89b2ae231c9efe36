"""``python -m glue_spherex.local_archive``: prints its URL, serves with the given faults, stops on
SIGTERM; bad flags give a one-line error. A fresh process builds the tables and answers TAP
without importing astropy or scipy (they would cost seconds at every start)."""

import signal
import subprocess
import sys

import pytest
import requests


@pytest.mark.slow
def test_serves_until_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "glue_spherex.local_archive", "--port", "0", "--p-503", "1",
         "--retry-after", "3", "--latency", "uniform:0.01,0.02"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        r = requests.get(url + "/ibe/data/spherex/qr2/level2/none.fits", timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"] == "3"
        r = requests.get(url + "/TAP/sync", timeout=60, params={
            "LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM spherex.plane", "FORMAT": "csv"})
        assert r.status_code == 200 and int(r.text.split()[1]) > 1000
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_bad_flags_fail_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "glue_spherex.local_archive", "--p-500", "1.5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "probability" in proc.stderr


@pytest.mark.slow
def test_tables_and_tap_need_neither_astropy_nor_scipy():
    code = """
import sys, urllib.parse, urllib.request
from glue_spherex.local_archive import LocalArchive
with LocalArchive() as arch:
    query = "SELECT COUNT(*) FROM spherex.obscore WHERE 1 = CONTAINS(POINT(210.8, 54.3), s_region)"
    form = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": query, "FORMAT": "csv"})
    with urllib.request.urlopen(arch.tap_url + "/sync", form.encode(), timeout=60) as r:
        print(r.read().decode().split()[1])
print(sorted({m.split(".")[0] for m in sys.modules} & {"astropy", "scipy"}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    count, heavy = proc.stdout.split("\n")[:2]
    assert int(count) > 50 and heavy == "[]"
