"""Store URLs of the embedded SQLite store (``--store sqlite:///...``) and the paths they give."""

from __future__ import annotations

import pytest

from fhir_server.store.sqlite import path_from_url


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////srv/fhir/fhir.db", "/srv/fhir/fhir.db"),  # what the default data dir gives
        ("sqlite:///srv/fhir/fhir.db", "/srv/fhir/fhir.db"),
        ("sqlite://data/fhir.db", "data/fhir.db"),
        ("sqlite:////srv/my%20data/fhir.db", "/srv/my data/fhir.db"),
    ],
)
def test_store_urls_give_clean_paths(url: str, path: str) -> None:
    """/health shows the path: no leading double slash from sqlite:////abs/path."""
    assert str(path_from_url(url)) == path
