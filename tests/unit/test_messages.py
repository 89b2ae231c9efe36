"""plain_message: every dialog error is one plain sentence saying what to do."""

import errno
import socket

import pytest
import requests

from glue_spherex.qt.messages import plain_message


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _plain(text):
    assert "\n" not in text and "Error:" not in text and ".part" not in text
    return text


def test_connection_refused_names_the_host():
    port = _closed_port()
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(f"http://127.0.0.1:{port}/TAP", timeout=5)
    text = _plain(plain_message(info.value))
    assert text == (f"Cannot reach the archive at 127.0.0.1:{port}: check the address and "
                    "your network connection, then try again.")


def test_read_only_folder_names_the_directory():
    exc = OSError(errno.EROFS, "Read-only file system", "/x/y.fits.part")
    assert _plain(plain_message(exc)) == "Cannot write to /x: choose another output folder."


def test_output_under_a_file(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    with pytest.raises(OSError) as info, open(afile / "cut.fits.part", "wb"):
        pass
    text = _plain(plain_message(info.value))
    assert str(afile) in text and "choose another output folder" in text


def test_fallback_keeps_first_line_without_class_or_part():
    exc = ValueError("ValueError: bad file /tmp/c.fits.part\nsecond line")
    assert plain_message(exc) == "bad file /tmp/c.fits"
