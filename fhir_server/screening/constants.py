"""Canonical URLs the screening feature reads from Questionnaires and writes into resources."""

from __future__ import annotations

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"
BIB = "https://borninbelgiumpro.be/fhir/"
BIB_SD = BIB + "StructureDefinition/"

# SDC behaviour and population
CALCULATED = SDC + "sdc-questionnaire-calculatedExpression"
ENABLE_WHEN_EXPRESSION = SDC + "sdc-questionnaire-enableWhenExpression"
INITIAL_EXPRESSION = SDC + "sdc-questionnaire-initialExpression"
POPULATION_CONTEXT = SDC + "sdc-questionnaire-itemPopulationContext"
LAUNCH_CONTEXT = SDC + "sdc-questionnaire-launchContext"
VARIABLE = CORE + "variable"

# SDC extraction
OBSERVATION_EXTRACT = SDC + "sdc-questionnaire-observationExtract"
OBSERVATION_CATEGORY = SDC + "sdc-questionnaire-observation-extract-category"
DEFINITION_EXTRACT = SDC + "sdc-questionnaire-definitionExtract"
DEFINITION_EXTRACT_VALUE = SDC + "sdc-questionnaire-definitionExtractValue"
ITEM_EXTRACTION_CONTEXT = SDC + "sdc-questionnaire-itemExtractionContext"  # deprecated form
ALLOCATE_ID = SDC + "sdc-questionnaire-extractAllocateId"

# scores
ITEM_WEIGHT = CORE + "itemWeight"
ORDINAL_VALUE = CORE + "ordinalValue"  # the R4 name of the same thing, read as a synonym
UNIT = CORE + "questionnaire-unit"
HIDDEN = CORE + "questionnaire-hidden"
MIN_VALUE = CORE + "minValue"
MAX_VALUE = CORE + "maxValue"
TRANSLATION = CORE + "translation"

# BiB extensions (docs/screening.md, "Data the server reads")
SAFETY_ALERT = BIB_SD + "questionnaire-safety-alert"
EXTRACT_ON_COMPLETE = BIB_SD + "questionnaire-extract-on-complete"
TRANSLATION_STATUS = BIB_SD + "questionnaire-translation-status"

FHIRPATH = "text/fhirpath"
FHIR_QUERY = "application/x-fhir-query"

# answer value[x] keys each item type accepts (R4 Questionnaire.item.type)
ANSWER_KEYS: dict[str, tuple[str, ...]] = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime",),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "choice": ("valueCoding",),
    "open-choice": ("valueCoding", "valueString"),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}
OPTION_KEYS = (
    "valueCoding",
    "valueString",
    "valueInteger",
    "valueDate",
    "valueTime",
    "valueReference",
)

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
TASK_CODES = "http://hl7.org/fhir/CodeSystem/task-code"
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
BIB_CS = BIB + "CodeSystem/"
INDICATOR_SYSTEM = BIB_CS + "bib-vulnerability-indicator"
STEP_SYSTEM = BIB_CS + "bib-screening-step"
ALERT_SYSTEM = BIB_CS + "bib-screening-alert"
