"""BiB FHIR server: a FHIR R4 (4.0.1) server for the Born in Belgium Professionals programme."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
