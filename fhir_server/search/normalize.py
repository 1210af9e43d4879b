"""String search values, normalised: case- and accent-insensitive, as FHIR string search asks."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import jellyfish

# Longer strings are indexed (and searched) by their first MAX_INDEXED_CHARS characters.
MAX_INDEXED_CHARS = 4096


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Fold case and strip accents: 'Élodie' and 'elodie' compare equal."""
    if text.isascii():
        return " ".join(text.lower().split())[:MAX_INDEXED_CHARS]
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.split())[:MAX_INDEXED_CHARS]


@lru_cache(maxsize=65536)
def phonetic(text: str) -> str:
    """The phonetic key of a name for the ``phonetic`` search parameters: Soundex of the folded
    name, so that Janssens / Jansens and Lefebvre / Lefevre match."""
    folded = "".join(c for c in normalize(text) if c.isalpha())
    return jellyfish.soundex(folded) if folded else ""
