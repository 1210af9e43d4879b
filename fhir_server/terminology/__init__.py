"""Terminology: the CodeSystems and ValueSets the server knows, and value set expansion."""

from fhir_server.terminology.catalog import Catalog, default_catalog

__all__ = ["Catalog", "default_catalog"]
