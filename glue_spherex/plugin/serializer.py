"""Saving a glue session in linear time: the names glue's serializer gives objects.

glue's :class:`~glue.core.state.GlueSerializer` names every object it saves after its type
and makes the name unique by probing ``Component_0``, ``Component_1``, ... until one is free.
A session of N cutouts holds about 6N components, N coordinate objects and N links, so the
probing is O(N²): 5 of the 8 s it took to save a session of 700 cutouts.

:func:`install` replaces that method with one that remembers, per name, how far the probing
got. Names are only ever added to the serializer, so every index below the remembered one is
still taken and the first free index found is the one glue would find: the saved session is
byte-for-byte the same (``tests/test_plugin_links.py`` checks it). :func:`uninstall` puts
glue's method back; the plugin's ``setup``/``teardown`` do both.
"""

from __future__ import annotations

from glue.core.state import GlueSerializer

__all__ = ["install", "uninstall", "installed"]

_glue_disambiguate = GlueSerializer._disambiguate


def _disambiguate(self, name):
    if name not in self._objs:
        return name
    start = self.__dict__.setdefault("_spherex_probe", {})
    i = start.get(name, 0)
    while "%s_%i" % (name, i) in self._objs:  # noqa: UP031 -- glue's exact format
        i += 1
    start[name] = i
    return "%s_%i" % (name, i)  # noqa: UP031


def install():
    """Give glue's session serializer the linear-time naming."""
    GlueSerializer._disambiguate = _disambiguate


def uninstall():
    """Give glue's session serializer its own naming back."""
    GlueSerializer._disambiguate = _glue_disambiguate


def installed():
    return GlueSerializer._disambiguate is _disambiguate
