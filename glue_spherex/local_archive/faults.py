"""Seeded fault injection for the local archive: the failures a client of IRSA meets.

A :class:`FaultConfig` says how often each fault happens and on which routes. For every
request on a covered route the server draws, from one seeded random stream, a latency and at
most one fault: HTTP 500, 502 (what IRSA's proxy sends), 503 or 429 with ``Retry-After``, a
connection reset mid-body, a body truncated under a full Content-Length, a stall, or an HTML
error page with status 200. Latency is slept in the handling thread, so concurrent requests
overlap. The table of faults and the settings are in ``docs/archive.rst`` ("Injecting faults").
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields

from ..errors import SpherexInputError

__all__ = ["FaultConfig", "Latency", "FAULT_KINDS", "FAULT_EFFECTS", "ROUTE_KINDS"]

FAULT_KINDS = ("500", "502", "503", "429", "reset", "truncate", "stall", "html200")
#: What a client sees for each fault kind (the command line's help and the docs' table)
FAULT_EFFECTS = {
    "500": "HTTP 500 Internal Server Error",
    "502": "HTTP 502 Bad Gateway (HTML body)",
    "503": "HTTP 503 Service Unavailable with Retry-After",
    "429": "HTTP 429 Too Many Requests with Retry-After",
    "reset": "send part of the body, then reset the TCP connection",
    "truncate": "announce the full Content-Length, send part of the body, close",
    "stall": "send part of the body, pause --stall-seconds, send the rest",
    "html200": "HTTP 200 with an HTML error page instead of the product",
}
ROUTE_KINDS = ("data", "tap", "sia")
_BODY_FAULTS = ("reset", "truncate", "stall")


class Latency:
    """Per-request delay: ``0.15`` (fixed seconds), ``'uniform:LOW,HIGH'`` or
    ``'lognormal:MEDIAN,SIGMA'`` (median in seconds, sigma of the natural log)."""

    def __init__(self, spec=0.0):
        self.spec = spec
        self.kind, self.args = self._parse(spec)

    @staticmethod
    def _parse(spec):
        usage = ("latency must be seconds (e.g. 0.15), 'uniform:LOW,HIGH' or "
                 f"'lognormal:MEDIAN,SIGMA'; got {spec!r}")
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            if spec < 0 or not math.isfinite(spec):
                raise SpherexInputError(usage)
            return "fixed", (float(spec),)
        if not isinstance(spec, str):
            raise SpherexInputError(usage)
        name, _, rest = spec.partition(":")
        try:
            if not rest:
                return Latency._parse(float(name))
            args = tuple(float(x) for x in rest.split(","))
        except ValueError:
            raise SpherexInputError(usage) from None
        if name == "uniform" and len(args) == 2 and 0 <= args[0] <= args[1]:
            return "uniform", args
        if name == "lognormal" and len(args) == 2 and args[0] > 0 and args[1] >= 0:
            return "lognormal", args
        raise SpherexInputError(usage)

    def draw(self, rng):
        if self.kind == "fixed":
            return self.args[0]
        if self.kind == "uniform":
            return rng.uniform(*self.args)
        return rng.lognormvariate(math.log(self.args[0]), self.args[1])

    def __repr__(self):
        return f"Latency({self.spec!r})"


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong, how often, and where.

    Parameters
    ----------
    latency : float or str
        Delay before each response; see :class:`Latency`.
    bandwidth : float or None
        Cap on the body rate of each response, bytes per second.
    p_500, p_502, p_503, p_429, p_reset, p_truncate, p_stall, p_html200 : float
        Probability of each fault per request; at most one fault happens per request, so
        they must sum to at most 1.
    retry_after : int
        Seconds sent in ``Retry-After`` with 429 and 503.
    stall_seconds : float
        Length of the pause of a ``stall``.
    cut_at : float
        Fraction of the body a ``reset``, ``truncate`` or ``stall`` sends before it strikes
        (default 0.5, half; 0.02 strikes a pipeline-7 cutout before its EPSF header).
    routes : str
        ``'data'`` (the ``/ibe/`` file and cutout routes, the default), ``'all'``, or a
        comma-separated subset of ``data,tap,sia``.
    """

    latency: float | str = 0.0
    bandwidth: float | None = None
    p_500: float = 0.0
    p_502: float = 0.0
    p_503: float = 0.0
    p_429: float = 0.0
    p_reset: float = 0.0
    p_truncate: float = 0.0
    p_stall: float = 0.0
    p_html200: float = 0.0
    retry_after: int = 1
    stall_seconds: float = 5.0
    cut_at: float = 0.5
    routes: str = "data"

    def __post_init__(self):
        object.__setattr__(self, "_latency", Latency(self.latency))
        probs = self.probabilities
        for kind, p in probs.items():
            if not 0.0 <= p <= 1.0:
                raise SpherexInputError(f"probability of fault {kind} must lie in [0, 1], got {p}")
        if sum(probs.values()) > 1.0 + 1e-9:
            raise SpherexInputError("fault probabilities must sum to at most 1")
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise SpherexInputError(f"bandwidth must be a positive number of bytes/s, "
                                    f"got {self.bandwidth!r}")
        if self.stall_seconds < 0 or self.retry_after < 0:
            raise SpherexInputError("stall_seconds and retry_after must be >= 0")
        if not 0.0 <= self.cut_at < 1.0:
            raise SpherexInputError(f"cut_at must lie in [0, 1), got {self.cut_at!r}")
        object.__setattr__(self, "_routes", self._parse_routes(self.routes))

    @staticmethod
    def _parse_routes(routes):
        if routes == "all":
            return set(ROUTE_KINDS)
        parts = {p.strip() for p in str(routes).split(",") if p.strip()}
        if not parts or not parts <= set(ROUTE_KINDS):
            raise SpherexInputError(f"fault routes must be 'all' or a comma-separated subset of "
                                    f"{','.join(ROUTE_KINDS)}; got {routes!r}")
        return parts

    @property
    def probabilities(self):
        return {kind: getattr(self, f"p_{kind}") for kind in FAULT_KINDS}

    def applies_to(self, route_kind):
        return route_kind in self._routes

    def draw(self, rng, route_kind):
        """``(latency_seconds, fault or None)`` for one request on ``route_kind``."""
        if not self.applies_to(route_kind):
            return 0.0, None
        delay = self._latency.draw(rng)
        u = rng.random()
        acc = 0.0
        for kind, p in self.probabilities.items():
            acc += p
            if p > 0 and u < acc:
                return delay, kind
        return delay, None

    def describe(self):
        """The non-default settings, for a startup banner."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out.append(f"{f.name}={value}")
        return ", ".join(out) or "no faults"


def is_body_fault(kind):
    return kind in _BODY_FAULTS


def new_rng(seed):
    return random.Random(seed)
