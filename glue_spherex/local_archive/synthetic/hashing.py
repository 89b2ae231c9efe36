"""Counter-based random numbers: a pure function of (seed, stream, y, x).

Noise, corrupted values and per-exposure flags must be the same for a parent pixel whatever
window is rendered, so they cannot come from a sequential generator. A splitmix64 mix of the
pixel's coordinates gives independent uniforms for any subset of pixels, in any order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["uniform"]

_U64 = (1 << 64) - 1


def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed, stream, y, x):
    """Uniform numbers in (0, 1) for integer arrays ``y``, ``x`` (broadcast together)."""
    base = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + int(stream) * 0xD1B54A32D192ED03) & _U64)
    z = (np.asarray(y, np.uint64) * np.uint64(0x8CB92BA72F3D8DD7)
         + np.asarray(x, np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F) + base)
    z = _mix(_mix(z))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
