"""Belgian identifiers, checked for real (check digits, not only the digit patterns of be-core).

* **INSZ/NISS (SSIN)**: 11 digits ``YYMMDD SSS CC``. A national register number (RRN) has the
  birth month 00-12; a BIS number has the month + 20 (sex unknown when the number was given) or
  + 40 (sex known), i.e. 20-32 or 40-52 (KB 8 February 1991, art. 2). The sequence ``SSS`` is
  001-998. ``CC = 97 - (YYMMDDSSS mod 97)``; for people born in or after 2000 the nine digits are
  preceded by ``2`` (``97 - (2YYMMDDSSS mod 97)``) (IBZ IT000; KB 8 February 1991, art. 4). Month
  and day may be 00 when unknown.
* **NIHDI/RIZIV/INAMI** numbers: 8 digits (organisations; the old professional form) or 11 digits
  (8 + a 3-digit qualification). Digits 7-8 check the first 6: ``97 - (first6 mod 97)``. The newer
  scheme for professionals mentioned in belgium.md (``89 - (first6 mod 89)``) is also accepted.
* **CBE/KBO/BCE** enterprise numbers: 10 digits starting with 0 or 1; the last two digits are
  ``97 - (first8 mod 97)``.

Every check returns ``None`` when the value is valid, or a sentence saying what is wrong.
"""

from __future__ import annotations

NS = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/"
LEGACY_NS = "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/"  # be-core <= 1.1.0
SSIN_SYSTEMS = frozenset({NS + "ssin", LEGACY_NS + "ssin"})
NIHDI_SYSTEMS = frozenset(
    {
        NS + "nihdi",
        NS + "nihdi-professional",
        NS + "nihdi-organization",
        LEGACY_NS + "nihdi",
        LEGACY_NS + "nihdi-professional",
        LEGACY_NS + "nihdi-organization",
    }
)
CBE_SYSTEMS = frozenset({NS + "cbe", LEGACY_NS + "cbe"})
PSEUDONYMIZATION = (
    "https://www.ehealth.fgov.be/standards/fhir/infsec/StructureDefinition/be-ext-pseudonymization"
)


def _digits(value: object, lengths: tuple[int, ...]) -> str | None:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    return value if len(value) in lengths else None


def ssin_kind(value: str) -> str:
    """'RRN' or 'BIS' from the month digits (assumes an 11-digit value)."""
    month = int(value[2:4])
    return "BIS" if 20 <= month <= 32 or 40 <= month <= 52 else "RRN"


def check_ssin(value: object) -> str | None:
    digits = _digits(value, (11,))
    if digits is None:
        return f"the INSZ/SSIN {value!r} must be exactly 11 digits, without dots, dashes or spaces"
    month, day, sequence = int(digits[2:4]), int(digits[4:6]), int(digits[6:9])
    if month <= 12:
        kind = "national register number"
    elif 20 <= month <= 32 or 40 <= month <= 52:
        kind = "BIS number"
    else:
        return (
            f"the INSZ/SSIN {digits} has month digits {digits[2:4]}: a national register number "
            "has 00-12, a BIS number 20-32 (sex unknown) or 40-52 (sex known)"
        )
    if day > 31:
        return f"the INSZ/SSIN {digits} has day digits {digits[4:6]} (00-31 expected)"
    if sequence in (0, 999):
        return f"the INSZ/SSIN {digits} has sequence number {digits[6:9]} (001-998 expected)"
    base = int(digits[:9])
    check = int(digits[9:])
    before_2000 = 97 - base % 97
    from_2000 = 97 - (2_000_000_000 + base) % 97
    if check not in (before_2000, from_2000):
        return (
            f"the check digits of the {kind} {digits} are wrong: {digits[9:]} given, "
            f"{before_2000:02d} expected (born before 2000) or {from_2000:02d} (born 2000 or later)"
        )
    return None


def check_nihdi(value: object) -> str | None:
    digits = _digits(value, (8, 11))
    if digits is None:
        return (
            f"the NIHDI number {value!r} must be 11 digits (or 8 digits for an organisation or "
            "without qualification), without dots, dashes or spaces"
        )
    base = int(digits[:6])
    check = int(digits[6:8])
    if check not in (97 - base % 97, 89 - base % 89):
        return (
            f"the check digits of the NIHDI number {digits} are wrong: {digits[6:8]} given, "
            f"{97 - base % 97:02d} expected (97 - first six digits mod 97)"
        )
    return None


def check_cbe(value: object) -> str | None:
    digits = _digits(value, (10,))
    if digits is None or digits[0] not in "01":
        return (
            f"the CBE/KBO enterprise number {value!r} must be 10 digits starting with 0 or 1, "
            "without dots or spaces"
        )
    expected = 97 - int(digits[:8]) % 97
    if int(digits[8:]) != expected:
        return (
            f"the check digits of the CBE/KBO enterprise number {digits} are wrong: "
            f"{digits[8:]} given, {expected:02d} expected (97 - first eight digits mod 97)"
        )
    return None


CHECKS = {
    **dict.fromkeys(SSIN_SYSTEMS, check_ssin),
    **dict.fromkeys(NIHDI_SYSTEMS, check_nihdi),
    **dict.fromkeys(CBE_SYSTEMS, check_cbe),
}


def pseudonymised(identifier: dict) -> bool:
    """True when the value carries the eHealth pseudonymisation marker (then it is not checked)."""
    meta = identifier.get("_value")
    if not isinstance(meta, dict):
        return False
    return any(
        isinstance(ext, dict) and ext.get("url") == PSEUDONYMIZATION
        for ext in meta.get("extension", ())
    )


def check_identifier(identifier: object, systems: frozenset[str] | None = None) -> str | None:
    """Check one Identifier whose system is a Belgian naming system (in ``systems`` if given)."""
    if not isinstance(identifier, dict):
        return None
    system = identifier.get("system")
    check = CHECKS.get(system) if isinstance(system, str) else None
    if check is None or (systems is not None and system not in systems):
        return None
    if "value" not in identifier or pseudonymised(identifier):
        return None
    return check(identifier["value"])
