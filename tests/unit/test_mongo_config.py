"""The MongoDB store URL: what goes to PyMongo, what the server keeps, what logs may show."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from pymongo.uri_parser import parse_uri

from fhir_server.store import open_store
from fhir_server.store.mongo import MongoStore
from fhir_server.store.mongo.config import DEFAULT_DATABASE, parse_url, redact


def test_database_from_the_path_or_the_option():
    assert parse_url("mongodb://db1:27017").database == DEFAULT_DATABASE
    assert parse_url("mongodb://db1:27017/bib").database == "bib"
    assert parse_url("mongodb://db1/bib?database=other").database == "other"


def test_server_options_are_taken_out_and_driver_options_kept_verbatim(tmp_path):
    ca_file = tmp_path / "ca files" / "ca.pem"
    ca_file.parent.mkdir()
    ca_file.write_text("not checked here")
    url = (
        "mongodb://app:s%40cret@m1:27017,m2:27017,m3:27017/bib?replicaSet=rs0"
        f"&tls=true&tlsCAFile={quote(str(ca_file), safe='')}&database=fhir_test&staged_limit=500"
        "&drop_on_close=true&w=majority"
    )
    config = parse_url(url)
    assert config.database == "fhir_test"
    assert config.staged_limit == 500 and config.drop_on_close
    assert "database=" not in config.uri and "staged_limit" not in config.uri
    parsed = parse_uri(config.uri)  # what PyMongo will make of it
    assert parsed["nodelist"] == [("m1", 27017), ("m2", 27017), ("m3", 27017)]
    assert parsed["options"]["replicaSet"] == "rs0"
    assert parsed["options"]["tls"] is True
    assert parsed["options"]["tlsCAFile"] == str(ca_file)
    assert parsed["password"] == "s@cret"
    assert dict(config.driver_options)["serverSelectionTimeoutMS"] == 10_000


def test_url_timeouts_and_appname_win_over_the_defaults():
    config = parse_url("mongodb://h/?serverSelectionTimeoutMS=500&appName=mine")
    assert dict(config.driver_options) == {}


def test_passwords_never_reach_messages():
    config = parse_url("mongodb://app:topsecret@m1/bib?replicaSet=rs0")
    assert "topsecret" not in config.display and "app:***@m1" in config.display
    assert redact("mongodb://m1/x") == "mongodb://m1/x"
    assert redact("mongodb+srv://user@cluster.example/x") == "mongodb+srv://user@cluster.example/x"


@pytest.mark.parametrize(
    "url", ["mongodb://h/bad.name", "mongodb://h/?database=a%2Fb", "mongodb://h/?staged_limit=x"]
)
def test_invalid_settings_are_refused(url: str):
    with pytest.raises(ValueError):
        parse_url(url)


def test_open_store_dispatches_mongodb_urls():
    store = open_store("mongodb://localhost:27017/bib?replicaSet=rs0")
    assert isinstance(store, MongoStore) and store.name == "mongodb"
    assert not store.supports_transactions  # unknown until open() has seen the topology
