"""The part of UCUM (Unified Code for Units of Measure) FHIRPath quantities need: parse a unit
expression (prefixes, exponents, ``.``, ``/``, parentheses, ``10*n``, annotations) and reduce
it to a factor on the UCUM base units, so that quantities of commensurable units compare and
convert exactly (decimal arithmetic, no binary floats).

The atoms are the SI base and derived units, the common clinical units (time, volume, pressure,
mass, amount) and the customary units of the UCUM "[...]" family that occur in clinical data.
Special (non-ratio) units such as ``Cel`` and ``[degF]`` are known but not convertible, as are
arbitrary units (``[IU]``, ``[arb'U]``): they are comparable only with themselves. See
docs/fhirpath.md for why this is not a third-party library.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

# Base dimensions: length, mass, time, angle, temperature, charge, luminous intensity.
_BASES = ("m", "g", "s", "rad", "K", "C", "cd")

_PREFIXES: dict[str, Decimal] = {
    "Y": Decimal("1e24"),
    "Z": Decimal("1e21"),
    "E": Decimal("1e18"),
    "P": Decimal("1e15"),
    "T": Decimal("1e12"),
    "G": Decimal("1e9"),
    "M": Decimal("1e6"),
    "k": Decimal("1e3"),
    "h": Decimal("1e2"),
    "da": Decimal("1e1"),
    "d": Decimal("1e-1"),
    "c": Decimal("1e-2"),
    "m": Decimal("1e-3"),
    "u": Decimal("1e-6"),
    "n": Decimal("1e-9"),
    "p": Decimal("1e-12"),
    "f": Decimal("1e-15"),
    "a": Decimal("1e-18"),
    "z": Decimal("1e-21"),
    "y": Decimal("1e-24"),
}

# atom -> (definition in other units, factor, metric?); a definition of None is a base unit.
_ATOMS: dict[str, tuple[str | None, str, bool]] = {
    "m": (None, "1", True),
    "g": (None, "1", True),
    "s": (None, "1", True),
    "rad": (None, "1", True),
    "K": (None, "1", True),
    "C": (None, "1", True),
    "cd": (None, "1", True),
    "1": ("1", "1", False),
    "10*": ("1", "10", False),  # handled by the parser (10*n)
    "%": ("1", "0.01", False),
    "[ppth]": ("1", "0.001", False),
    "[ppm]": ("1", "0.000001", False),
    "mol": ("1", "6.0221367e23", True),
    "sr": ("rad2", "1", True),
    "Hz": ("s-1", "1", True),
    "N": ("kg.m/s2", "1", True),
    "Pa": ("N/m2", "1", True),
    "J": ("N.m", "1", True),
    "W": ("J/s", "1", True),
    "A": ("C/s", "1", True),
    "V": ("J/C", "1", True),
    "F": ("C/V", "1", True),
    "Ohm": ("V/A", "1", True),
    "S": ("Ohm-1", "1", True),
    "Wb": ("V.s", "1", True),
    "T": ("Wb/m2", "1", True),
    "H": ("Wb/A", "1", True),
    "lm": ("cd.sr", "1", True),
    "lx": ("lm/m2", "1", True),
    "Bq": ("s-1", "1", True),
    "Gy": ("J/kg", "1", True),
    "Sv": ("J/kg", "1", True),
    "kat": ("mol/s", "1", True),
    "U": ("umol/min", "1", True),
    "min": ("s", "60", False),
    "h": ("min", "60", False),
    "d": ("h", "24", False),
    "wk": ("d", "7", False),
    "a_j": ("d", "365.25", False),
    "a_t": ("d", "365.24219", False),
    "a_g": ("d", "365.2425", False),
    "a": ("a_j", "1", False),
    "mo_j": ("a_j", "0.08333333333333333333333333333", False),
    "mo_g": ("a_g", "0.08333333333333333333333333333", False),
    "mo": ("mo_j", "1", False),
    "l": ("dm3", "1", True),
    "L": ("l", "1", True),
    "ar": ("m2", "100", True),
    "t": ("kg", "1000", True),
    "bar": ("Pa", "100000", True),
    "u": ("g", "1.6605402e-24", True),
    "eV": ("J", "1.60217733e-19", True),
    "cal": ("J", "4.184", True),
    "[Cal]": ("kcal", "1", False),
    "m[H2O]": ("kPa", "9.80665", True),
    "m[Hg]": ("kPa", "133.3220", True),
    "[in_i]": ("cm", "2.54", False),
    "[ft_i]": ("[in_i]", "12", False),
    "[yd_i]": ("[ft_i]", "3", False),
    "[mi_i]": ("[ft_i]", "5280", False),
    "[lb_av]": ("g", "453.59237", False),
    "[oz_av]": ("[lb_av]", "0.0625", False),
    "[gr]": ("mg", "64.79891", False),
    "[stone_av]": ("[lb_av]", "14", False),
    "[gal_us]": ("l", "3.785411784", False),
    "[qt_us]": ("[gal_us]", "0.25", False),
    "[pt_us]": ("[qt_us]", "0.5", False),
    "[foz_us]": ("[pt_us]", "0.0625", False),
    "[tsp_us]": ("ml", "4.92892159375", False),
    "[tbs_us]": ("[tsp_us]", "3", False),
    "[cup_us]": ("[tbs_us]", "16", False),
    "[psi]": ("[lb_av]/[in_i]2", "0.45359237", False),  # approximate gravity-free form
    "deg": ("rad", "0.01745329251994329576923690768", False),
    "'": ("deg", "0.01666666666666666666666666667", False),
    "''": ("'", "0.01666666666666666666666666667", False),
    "[pi]": ("1", "3.141592653589793238462643383", False),
    "[drp]": ("ml", "0.05", False),
    "[ppb]": ("1", "1e-9", False),
    "[pptr]": ("1", "1e-12", False),
    "eq": ("mol", "1", True),
    "osm": ("mol", "1", True),
    "g%": ("g/dl", "1", True),
    "[iU]": ("[IU]", "1", True),
}
# Units that are valid but not on a ratio scale or not defined in base units: comparable only
# with themselves.
_SPECIAL = frozenset(
    {
        "Cel",
        "[degF]",
        "[degR]",
        "[IU]",
        "[arb'U]",
        "[USP'U]",
        "[pH]",
        "B",
        "Np",
        "[hp'_X]",
        "[hp'_C]",
        "[kp'_X]",
        "[kp'_C]",
        "[CFU]",
        "[PFU]",
        "[FFU]",
        "[BAU]",
        "[AU]",
        "[Amb'a'1'U]",
        "[TCID_50]",
        "[CCID_50]",
        "[mclg'U]",
        "[tb'U]",
        "[lf]",
        "[HPF]",
        "[LPF]",
        "bit",
        "By",
    }
)


class UnitError(ValueError):
    """Not a UCUM unit this server knows."""


Dims = tuple[tuple[str, int], ...]


def _combine(a: dict[str, int], b: dict[str, int], sign: int) -> dict[str, int]:
    out = dict(a)
    for key, power in b.items():
        out[key] = out.get(key, 0) + sign * power
        if out[key] == 0:
            del out[key]
    return out


_TOKEN = re.compile(r"\{[^}]*\}|[./()]|[^./(){}]+")
_SIMPLE = re.compile(r"^(.*?)([+-]?\d+)?$")


@lru_cache(maxsize=2048)
def canonical(unit: str) -> tuple[Decimal, Dims]:
    """(factor, dimensions) of ``unit`` on the base units; raises ``UnitError``."""
    if not unit:
        raise UnitError("empty unit")
    factor, dims = _Term(unit).parse()
    return factor, tuple(sorted(dims.items()))


def is_unit(unit: str) -> bool:
    try:
        canonical(unit)
    except UnitError:
        return False
    return True


class _Term:
    def __init__(self, text: str) -> None:
        if any(c.isspace() for c in text):
            raise UnitError(f"{text!r}: a unit has no spaces")
        self.tokens = _TOKEN.findall(text)
        if "".join(self.tokens) != text:
            raise UnitError(f"{text!r} is not a UCUM unit")
        self.pos = 0

    def parse(self) -> tuple[Decimal, dict[str, int]]:
        factor, dims = self.term()
        if self.pos != len(self.tokens):
            raise UnitError(f"unexpected {self.tokens[self.pos]!r}")
        return factor, dims

    def term(self) -> tuple[Decimal, dict[str, int]]:
        if self.pos < len(self.tokens) and self.tokens[self.pos] == "/":
            self.pos += 1
            factor, dims = self.component()
            factor, dims = 1 / factor, _combine({}, dims, -1)
        else:
            factor, dims = self.component()
        while self.pos < len(self.tokens) and self.tokens[self.pos] in "./":
            op = self.tokens[self.pos]
            self.pos += 1
            f2, d2 = self.component()
            if op == ".":
                factor, dims = factor * f2, _combine(dims, d2, 1)
            else:
                factor, dims = factor / f2, _combine(dims, d2, -1)
        return factor, dims

    def component(self) -> tuple[Decimal, dict[str, int]]:
        if self.pos >= len(self.tokens):
            raise UnitError("unit expected")
        token = self.tokens[self.pos]
        self.pos += 1
        if token == "(":
            result = self.term()
            if self.pos >= len(self.tokens) or self.tokens[self.pos] != ")":
                raise UnitError("missing )")
            self.pos += 1
            return result
        if token.startswith("{"):
            return Decimal(1), {}
        annotation = self.pos < len(self.tokens) and self.tokens[self.pos].startswith("{")
        if annotation:
            self.pos += 1
        return _annotatable(token)


def _annotatable(token: str) -> tuple[Decimal, dict[str, int]]:
    if token.isdigit():
        return Decimal(token), {}
    if token.startswith("10*") or token.startswith("10^"):
        exponent = token[3:]
        if not re.fullmatch(r"[+-]?\d+", exponent):
            raise UnitError(f"{token!r} is not a UCUM unit")
        return Decimal(10) ** int(exponent), {}
    match = _SIMPLE.match(token)
    assert match is not None
    symbol, exponent_text = match.group(1), match.group(2)
    if not symbol:
        raise UnitError(f"{token!r} is not a UCUM unit")
    exponent = int(exponent_text) if exponent_text else 1
    factor, dims = _simple_unit(symbol)
    return factor**exponent, {k: v * exponent for k, v in dims.items()}


@lru_cache(maxsize=1024)
def _simple_unit(symbol: str) -> tuple[Decimal, dict[str, int]]:
    if symbol in _ATOMS or symbol in _SPECIAL:
        return _atom(symbol)
    for prefix in ("da", *[p for p in _PREFIXES if p != "da"]):
        if symbol.startswith(prefix) and len(symbol) > len(prefix):
            rest = symbol[len(prefix) :]
            if (rest in _ATOMS and _ATOMS[rest][2]) or rest in _SPECIAL:
                factor, dims = _atom(rest)
                return _PREFIXES[prefix] * factor, dims
    raise UnitError(f"{symbol!r} is not a UCUM unit")


def _atom(symbol: str) -> tuple[Decimal, dict[str, int]]:
    if symbol in _SPECIAL:
        return Decimal(1), {symbol: 1}
    definition, factor_text, _metric = _ATOMS[symbol]
    if definition is None:
        return Decimal(1), {symbol: 1}
    factor, dims = _Term(definition).parse() if definition != "1" else (Decimal(1), {})
    return factor * Decimal(factor_text), dims


def convert(value: Decimal, source: str, target: str) -> Decimal | None:
    """``value`` in ``source`` units expressed in ``target`` units; None if not commensurable."""
    if source == target:
        return value
    try:
        f1, d1 = canonical(source)
        f2, d2 = canonical(target)
    except UnitError:
        return None
    if d1 != d2:
        return None
    return value * f1 / f2
