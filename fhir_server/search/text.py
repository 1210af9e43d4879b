"""Free-text search (``_content``, ``_text``): the words of a resource, folded and stemmed.

Both stores receive the same terms, computed here: SQLite keeps them in an FTS5 table, MongoDB as
index entries of the version document, so a query means the same on both (the contract suite
checks it). A term is a word folded like string search (case and accents), plus its Dutch, French
and English stems (snowballstemmer) when they differ: a French description is found by a Dutch
stem only if the stems agree, which is rare, and a bilingual resource is found in both languages.
Very common words of the three languages are left out (they would match nearly everything).

Query syntax (documented in docs/socialmap.md): words are ANDed; ``a,b`` (FHIR's comma) is an OR
of two texts; a word ending in ``*`` is a prefix of the folded word. A word matches when any of
its forms (folded, stems) is among the resource's terms. Phrases are not supported (the MongoDB
index keeps no positions); quotes are ignored.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

import snowballstemmer

from fhir_server.search.normalize import normalize

MAX_TEXT_CHARS = 200_000  # per resource: beyond this, text is not indexed
MAX_QUERY_WORDS = 16
MIN_PREFIX = 3
_WORD = re.compile(r"\w+", re.UNICODE)
_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&(#?\w+);")

# Words that carry no meaning for a social-map search in Dutch, French and English.
STOP_WORDS = frozenset(
    [
        "de",
        "het",
        "een",
        "en",
        "van",
        "in",
        "op",
        "te",
        "voor",
        "met",
        "is",
        "die",
        "dat",
        "aan",
        "of",
        "als",
        "bij",
        "zijn",
        "er",
        "om",
        "door",
        "naar",
        "ook",
        "niet",
        "maar",
        "wordt",
        "worden",
        "tot",
        "uit",
        "over",
        "nog",
        "dan",
        "wat",
        "wie",
        "hoe",
        "waar",
        "u",
        "je",
        "jij",
        "we",
        "wij",
        "ze",
        "zij",
        "hun",
        "le",
        "la",
        "les",
        "un",
        "une",
        "des",
        "du",
        "et",
        "en",
        "au",
        "aux",
        "pour",
        "par",
        "sur",
        "dans",
        "avec",
        "est",
        "sont",
        "qui",
        "que",
        "ou",
        "ne",
        "pas",
        "ce",
        "cette",
        "ces",
        "se",
        "sa",
        "son",
        "ses",
        "leur",
        "leurs",
        "vous",
        "nous",
        "il",
        "elle",
        "ils",
        "elles",
        "d",
        "l",
        "the",
        "a",
        "an",
        "and",
        "of",
        "in",
        "on",
        "to",
        "for",
        "with",
        "is",
        "are",
        "be",
        "by",
        "or",
        "as",
        "at",
        "from",
        "this",
        "that",
        "it",
        "not",
    ]
)
_STEMMERS = ("dutch", "french", "english")
_HTML_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": " "}


@lru_cache(maxsize=8)
def _stemmer(language: str) -> Any:
    return snowballstemmer.stemmer(language)


def _fold(word: str) -> str:
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=200_000)
def word_forms(word: str) -> tuple[str, ...]:
    """The folded word and its stems (folded), without duplicates; () for a stop word."""
    lowered = word.casefold()
    folded = _fold(lowered)
    if not folded or folded in STOP_WORDS:
        return ()
    forms = [folded]
    if len(folded) > 3 and not folded.isdigit():
        for language in _STEMMERS:
            stem = _fold(_stemmer(language).stemWord(lowered))
            if stem and stem not in forms:
                forms.append(stem)
    return tuple(forms)


def terms_of(texts: list[str]) -> str:
    """The index terms of some texts, as one space-separated string (each term once)."""
    seen: dict[str, None] = {}
    size = 0
    for text in texts:
        size += len(text)
        if size > MAX_TEXT_CHARS:
            break
        for word in _WORD.findall(text):
            for form in word_forms(word):
                seen.setdefault(form, None)
    return " ".join(seen)


def strings_of(value: Any, out: list[str], skip: frozenset[str] = frozenset()) -> None:
    """Every string in a resource (element values, not keys), except the narrative, ``meta``,
    URLs and references, codes' systems and the members in ``skip``."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in _NOT_TEXT or key in skip:
                continue
            strings_of(item, out)
    elif isinstance(value, list):
        for item in value:
            strings_of(item, out)


# members whose strings are identifiers of things rather than words of the content
_NOT_TEXT = frozenset(
    {
        "resourceType",
        "id",
        "meta",
        "text",
        "url",
        "system",
        "reference",
        "version",
        "div",
        "contentType",
        "data",
        "hash",
    }
)


def narrative_text(div: str) -> str:
    """The words of an XHTML narrative (tags dropped, entities decoded)."""
    text = _TAG.sub(" ", div)
    return _ENTITY.sub(lambda m: _entity(m.group(1)), text)


def _entity(name: str) -> str:
    if name.startswith("#"):
        try:
            code = int(name[2:], 16) if name[1:2] in ("x", "X") else int(name[1:])
            return chr(code)
        except (ValueError, OverflowError):
            return " "
    return _HTML_ENTITIES.get(name, " ")


def query_terms(value: str) -> tuple[tuple[str, ...], ...]:
    """A free-text search value -> AND of words, each an OR of forms (``x*`` = prefix x).

    Raises ValueError when the value has no searchable word."""
    words = _WORD.findall(value.replace('"', " "))
    raw_words = re.findall(r"\w+\*?", value.replace('"', " "))
    out: list[tuple[str, ...]] = []
    for raw in raw_words[: MAX_QUERY_WORDS * 2]:
        prefix = raw.endswith("*")
        word = raw.rstrip("*")
        if prefix:
            folded = _fold(word.casefold())
            if len(folded) >= MIN_PREFIX:
                out.append((folded + "*",))
            continue
        forms = word_forms(word)
        if forms:
            out.append(forms)
    if not out:
        raise ValueError(
            "the text has no searchable word" + (" (only very common words)" if words else "")
        )
    return tuple(dict.fromkeys(out))[:MAX_QUERY_WORDS]


__all__ = ["narrative_text", "normalize", "query_terms", "strings_of", "terms_of", "word_forms"]
