"""Names of the social-map model: profile, extensions, code systems, identifier systems."""

from __future__ import annotations

BASE = "https://borninbelgiumpro.be/fhir"
PROFILE = f"{BASE}/StructureDefinition/bib-healthcareservice"
EXT = f"{BASE}/StructureDefinition/"
EXT_SOURCE = EXT + "bib-ext-social-map-source"
EXT_CONTACT = EXT + "bib-ext-contact-person"
EXT_ELIGIBILITY = EXT + "bib-ext-eligibility"
EXT_COST = EXT + "bib-ext-cost"
EXT_ACCESS = EXT + "bib-ext-access"
EXT_VERIFICATION = EXT + "bib-ext-verification"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"

CS = f"{BASE}/CodeSystem/"
CS_SOURCE = CS + "bib-social-map-source"
CS_TARGET_GROUP = CS + "bib-target-group"
CS_DELIVERY = CS + "bib-service-delivery-mode"
CS_CARE_LINE = CS + "bib-care-line"
CS_MODULE = CS + "bib-pmh-module"
CS_COST = CS + "bib-service-cost"
CS_REFERRAL = CS + "bib-referral-requirement"
CS_STATUS = CS + "bib-social-map-status"
CS_REGION = CS + "bib-region"
CS_PERIOD = CS + "bib-perinatal-period"
NIS = "https://statbel.fgov.be/fhir/CodeSystem/nis-municipality"
LANGUAGE = "urn:ietf:bcp:47"
NOMENCLATURE = (
    "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/be-ns-nihdi-nomenclature"
)
CBE = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe"

# identifier systems of source records (matching key of the import)
ID_SOCIALE_KAART = "https://www.desocialekaart.be/id/health-offer"
ID_SOCIALE_KAART_ORG = "https://www.desocialekaart.be/id/organisation"
ID_BRUXELLES_SOCIAL = "https://social.brussels/id/organisation"
ID_HSDS = "https://openreferral.org/id/"  # + the directory's own namespace
ID_LOCAL = f"{BASE}/NamingSystem/social-map-local"

COVERAGE_MAPS = (
    f"{BASE}/ConceptMap/bib-nis-municipality-to-region",
    f"{BASE}/ConceptMap/bib-nis-municipality-to-eerstelijnszone",
)
SP = f"{BASE}/SearchParameter/"
SP_COVERAGE = SP + "bib-hcs-coverage"
SP_STALE = SP + "bib-hcs-stale"
SP_LAST_VERIFIED = SP + "bib-hcs-last-verified"
TEXT_TYPES = ("HealthcareService", "Organization", "Location")
LANGUAGES = ("nl", "fr", "en")
