"""Distances on the Earth for ``near`` searches, exact on a sphere and computed without
trigonometry in the stores.

A position is also kept as a point on the unit sphere (x, y, z). The straight-line (chord)
distance between two such points orders positions exactly as the great-circle distance does, and
its square is plain arithmetic, so SQLite compares and sorts on it without math functions; a
latitude/longitude box around the searched point bounds the index scan first.
"""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180
UNITS_KM = {
    "km": 1.0,
    "m": 0.001,
    "mi": 1.609344,
    "[mi_i]": 1.609344,
    "[mi_us]": 1.609347,
}
DEFAULT_DISTANCE_KM = 50.0  # when near gives no distance (the R4 spec leaves it to the server)
MAX_DISTANCE_KM = 1000.0


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lon)
    return (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


def chord2_limit(km: float) -> float:
    """The squared chord length of a great-circle distance."""
    chord = 2 * math.sin(min(km, math.pi * EARTH_RADIUS_KM) / (2 * EARTH_RADIUS_KM))
    return chord * chord


def km_of_chord2(chord2: float) -> float:
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(max(0.0, chord2)) / 2))


def chord2(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, float, float]:
    """(lat low, lat high, lon low, lon high) containing every point within ``km``; the longitude
    range is the whole circle near the poles or when the box would cross the antimeridian."""
    dlat = km / KM_PER_DEGREE
    low, high = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    widest = max(abs(low), abs(high))
    if widest >= 89.9:
        return low, high, -180.0, 180.0
    dlon = dlat / math.cos(math.radians(widest))
    if lon - dlon < -180 or lon + dlon > 180:
        return low, high, -180.0, 180.0
    return low, high, lon - dlon, lon + dlon
