# ruff: noqa: E501  (translation tables read better unwrapped)
"""Generate the screening content: the terminology it needs (terminology/bib) and the
Questionnaires, protocol and OperationDefinitions it ships (content/screening).

The JSON files it writes are the shipped source of truth (the server never runs this script);
the script keeps the four languages, weights and extensions consistent while they are edited.
Run it from the repository root after changing a table below:

    .venv/bin/python tools/screening_content.py

A programme that replaces the BiB question set writes its own Questionnaire (a new version of the
canonical URL) by hand or with its own tools; nothing here is needed at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TERMINOLOGY = ROOT / "terminology" / "bib"
CONTENT = ROOT / "content" / "screening"
BIB = "https://borninbelgiumpro.be/fhir"
VERSION = "0.1.0"
DATE = "2026-11-24"
PUBLISHER = "Born in Belgium Professionals"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"
ITEM_WEIGHT = CORE + "itemWeight"
INDICATOR = f"{BIB}/CodeSystem/bib-vulnerability-indicator"
INSTRUMENT = f"{BIB}/CodeSystem/bib-screening-instrument"
ELEMENT = f"{BIB}/CodeSystem/bib-screening-element"
STEP = f"{BIB}/CodeSystem/bib-screening-step"
ALERT = f"{BIB}/CodeSystem/bib-screening-alert"
EPDS_ANSWER = f"{BIB}/CodeSystem/bib-epds-answer"
LANGS = ("nl-BE", "fr-BE", "en", "de")
CONTACT = [
    {"name": PUBLISHER, "telecom": [{"system": "url", "value": "https://borninbelgiumpro.be"}]}
]
JURISDICTION = [
    {"coding": [{"system": "urn:iso:std:iso:3166", "code": "BE", "display": "Belgium"}]}
]


def T(en: str, nl: str, fr: str, de: str) -> dict[str, str]:
    return {"en": en, "nl-BE": nl, "fr-BE": fr, "de": de}


def write(path: Path, resource: dict[str, Any]) -> None:
    path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n")


# -- terminology --------------------------------------------------------------------------------


def concept(code: str, names: dict[str, str], definition: str, basis: str = "proposal",
            seed_ref: str | None = None) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "code": code,
        "display": names["en"],
        "definition": definition,
        "designation": [{"language": lang, "value": names[lang]} for lang in LANGS],
        "property": [{"code": "basis", "valueCode": basis}],
    }
    if seed_ref:
        out["property"].append({"code": "seed-ref", "valueString": seed_ref})
    return out


BASIS_PROPERTY = {
    "code": "basis",
    "type": "code",
    "description": (
        "How the concept is grounded. 'seed' = the concept is stated in the BiB programme seed "
        "documents (S000-S004; the code itself is a proposal); 'external' = taken from public "
        "reference data outside the seeds (e.g. Statbel, Brussels care-zone websites); "
        "'proposal' = modelling proposal of the terminology authors, not stated as such in the "
        "seeds; 'gap' = placeholder for content the seeds announce but do not provide."
    ),
}
SEED_REF_PROPERTY = {
    "code": "seed-ref",
    "type": "string",
    "description": (
        "Reference to the seed passage(s) supporting the concept, as 'S00n:line[-line]' (raw "
        "line numbers of the seed files, see terminology/README.md)."
    ),
}


def code_system(id_: str, name: str, title: str, description: str,
                concepts: list[dict[str, Any]], seed_refs: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "resourceType": "CodeSystem",
        "id": id_,
        "language": "en",
        "url": f"{BIB}/CodeSystem/{id_}",
        "version": VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "date": DATE,
        "publisher": PUBLISHER,
        "contact": CONTACT,
        "description": description,
        "jurisdiction": JURISDICTION,
        "caseSensitive": True,
        "valueSet": f"{BIB}/ValueSet/{id_}",
        "content": "complete",
        "count": len(concepts),
        "property": [BASIS_PROPERTY, *([SEED_REF_PROPERTY] if seed_refs else [])],
        "concept": concepts,
    }


def value_set(code_system_: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": code_system_["id"],
        "language": "en",
        "url": f"{BIB}/ValueSet/{code_system_['id']}",
        "version": VERSION,
        "name": code_system_["name"],
        "title": code_system_["title"],
        "status": code_system_["status"],
        "experimental": False,
        "date": DATE,
        "publisher": PUBLISHER,
        "contact": CONTACT,
        "description": f"All codes of CodeSystem {code_system_['id']} ({code_system_['title']}).",
        "jurisdiction": JURISDICTION,
        "compose": {"include": [{"system": code_system_["url"]}]},
    }


NEW_INSTRUMENTS = [
    (
        "whooley",
        T("Whooley questions", "Whooley-vragen", "Questions de Whooley", "Whooley-Fragen"),
        "The two Whooley case-finding questions for depression (Whooley et al. 1997), yes or no, "
        "about the past month; positive if either answer is yes.",
    ),
    (
        "gad-2",
        T("GAD-2", "GAD-2-vragenlijst", "Questionnaire GAD-2", "GAD-2-Fragebogen"),
        "The first two items of the GAD-7 (anxiety), each 0-3 over the last two weeks; total 0-6.",
    ),
    (
        "gad-7",
        T("GAD-7", "GAD-7-vragenlijst", "Questionnaire GAD-7", "GAD-7-Fragebogen"),
        "Generalized Anxiety Disorder 7-item scale (Spitzer et al. 2006), each 0-3; total 0-21.",
    ),
    (
        "phq-2",
        T("PHQ-2", "PHQ-2-vragenlijst", "Questionnaire PHQ-2", "PHQ-2-Fragebogen"),
        "The first two items of the PHQ-9 (depression), each 0-3 over the last two weeks; total 0-6.",
    ),
    (
        "phq-9",
        T("PHQ-9", "PHQ-9-vragenlijst", "Questionnaire PHQ-9", "PHQ-9-Fragebogen"),
        "Patient Health Questionnaire 9-item depression scale (Kroenke et al. 2001), each 0-3; total "
        "0-27; item 9 asks about thoughts of self-harm.",
    ),
    (
        "epds",
        T(
            "Edinburgh Postnatal Depression Scale (EPDS)",
            "Edinburgh Postnatale Depressieschaal (EPDS)",
            "Échelle de dépression postnatale d'Édimbourg (EPDS)",
            "Edinburgh-Postnatale-Depressions-Skala (EPDS)",
        ),
        "The 10-item Edinburgh Postnatal Depression Scale (Cox, Holden and Sagovsky 1987), each "
        "0-3 over the past 7 days; total 0-30; item 10 asks about thoughts of self-harm.",
    ),
]

ELEMENTS = [
    (
        "consent",
        T(
            "Consent to the screening",
            "Toestemming voor de screening",
            "Consentement au dépistage",
            "Einwilligung in das Screening",
        ),
        "The section of a screening that records the woman's informed consent before any question.",
    ),
    (
        "consent-informed",
        T(
            "Informed about the screening",
            "Geïnformeerd over de screening",
            "Informée du dépistage",
            "Über das Screening informiert",
        ),
        "The woman was told the purpose of the screening, who sees its results and that she may "
        "refuse or stop at any time.",
    ),
    (
        "consent-given",
        T(
            "Agrees to the screening",
            "Stemt in met de screening",
            "Accepte le dépistage",
            "Stimmt dem Screening zu",
        ),
        "The woman agrees to answer the screening questions.",
    ),
    (
        "pregnancy",
        T(
            "Pregnancy at the time of screening",
            "Zwangerschap bij de screening",
            "Grossesse au moment du dépistage",
            "Schwangerschaft beim Screening",
        ),
        "The section of the BiB screening with what is known of the pregnancy when it is done "
        "(gestational age), pre-filled by $populate.",
    ),
    (
        "summary",
        T(
            "Screening summary",
            "Samenvatting van de screening",
            "Synthèse du dépistage",
            "Zusammenfassung des Screenings",
        ),
        "The section of the BiB screening with the values the server computes over all indicators.",
    ),
    (
        "indicator-score",
        T(
            "Indicator score",
            "Score van de indicator",
            "Score de l'indicateur",
            "Punktwert des Indikators",
        ),
        "The sum of the weights of the answers given for one vulnerability indicator.",
    ),
    (
        "risk-factor-count",
        T(
            "Number of risk factors",
            "Aantal risicofactoren",
            "Nombre de facteurs de risque",
            "Anzahl der Risikofaktoren",
        ),
        "How many vulnerability indicators reached their threshold in one screening.",
    ),
    (
        "high-risk-factor",
        T(
            "High-risk factor present",
            "Hoogrisicofactor aanwezig",
            "Facteur de risque élevé présent",
            "Hochrisikofaktor vorhanden",
        ),
        "At least one indicator the protocol counts as a high-risk factor reached its threshold.",
    ),
    (
        "whooley-positive",
        T(
            "Whooley questions positive",
            "Whooley-vragen positief",
            "Questions de Whooley positives",
            "Whooley-Fragen positiv",
        ),
        "At least one of the two Whooley questions was answered yes.",
    ),
    (
        "gad-2-total",
        T("GAD-2 total score", "GAD-2 totaalscore", "Score total GAD-2", "GAD-2 Gesamtpunktwert"),
        "The sum of the two GAD-2 items (0-6); no LOINC code could be confirmed for it.",
    ),
    (
        "self-harm-alert",
        T(
            "Self-harm safety alert",
            "Veiligheidsalarm zelfbeschadiging",
            "Alerte de sécurité automutilation",
            "Sicherheitsalarm Selbstverletzung",
        ),
        "The item the server computes to raise a safety alert on an answer about self-harm.",
    ),
]
STEPS = [
    (
        "screening",
        T("Screening", "Screening afnemen", "Dépistage", "Screening durchführen"),
        "Fill in a screening instrument as the next step of the protocol.",
    ),
    (
        "rescreening",
        T("Re-screening", "Herscreening", "Nouveau dépistage", "Erneutes Screening"),
        "Repeat a screening instrument later, as the protocol plans after a raised score.",
    ),
    (
        "clinical-assessment",
        T(
            "Clinical assessment",
            "Klinisch assessment",
            "Évaluation clinique",
            "Klinische Abklärung",
        ),
        "A clinical assessment by a mental-health professional, as the protocol plans after a high "
        "score.",
    ),
    (
        "safety-follow-up",
        T(
            "Safety follow-up",
            "Opvolging van een veiligheidsalarm",
            "Suivi d'une alerte de sécurité",
            "Nachverfolgung eines Sicherheitsalarms",
        ),
        "Contact the person the same day after a safety alert of a screening.",
    ),
]
ALERTS = [
    (
        "self-harm-thoughts",
        T(
            "Thoughts of self-harm reported",
            "Gedachten aan zelfbeschadiging gemeld",
            "Pensées d'automutilation signalées",
            "Gedanken an Selbstverletzung angegeben",
        ),
        "A screening answer reports thoughts of harming oneself (EPDS item 10 or PHQ-9 item 9 above "
        "0), whatever the total score.",
    ),
]


# -- EPDS (Cox, Holden, Sagovsky 1987): items and options in the original order ----------------
# Working translations by the BiB server team, NOT the validated Dutch (Pop et al.) or French
# (Guedeney and Fermanian) versions: each Questionnaire says so (translation-status extension).

EPDS_ITEMS: list[tuple[dict[str, str], list[tuple[dict[str, str], int]]]] = [
    (
        T(
            "I have been able to laugh and see the funny side of things",
            "Ik heb kunnen lachen en de zonnige kant van de dingen kunnen zien",
            "J'ai pu rire et prendre les choses du bon côté",
            "Ich konnte lachen und die schönen Seiten der Dinge sehen",
        ),
        [
            (
                T(
                    "As much as I always could",
                    "Net zoveel als altijd",
                    "Aussi souvent que d'habitude",
                    "So viel wie immer",
                ),
                0,
            ),
            (
                T(
                    "Not quite so much now",
                    "Nu niet zo veel",
                    "Pas tout à fait autant",
                    "Nicht ganz so viel wie sonst",
                ),
                1,
            ),
            (
                T(
                    "Definitely not so much now",
                    "Nu beslist niet zo veel",
                    "Vraiment beaucoup moins souvent ces jours-ci",
                    "Deutlich weniger als sonst",
                ),
                2,
            ),
            (T("Not at all", "Helemaal niet", "Absolument pas", "Überhaupt nicht"), 3),
        ],
    ),
    (
        T(
            "I have looked forward with enjoyment to things",
            "Ik heb met plezier naar dingen uitgekeken",
            "Je me suis sentie confiante et joyeuse en pensant à l'avenir",
            "Ich konnte mich auf Dinge freuen",
        ),
        [
            (
                T(
                    "As much as I ever did",
                    "Net zoveel als vroeger",
                    "Autant que d'habitude",
                    "So sehr wie immer",
                ),
                0,
            ),
            (
                T(
                    "Rather less than I used to",
                    "Iets minder dan vroeger",
                    "Plutôt moins que d'habitude",
                    "Etwas weniger als sonst",
                ),
                1,
            ),
            (
                T(
                    "Definitely less than I used to",
                    "Beslist minder dan vroeger",
                    "Vraiment moins que d'habitude",
                    "Deutlich weniger als sonst",
                ),
                2,
            ),
            (T("Hardly at all", "Bijna niet", "Pratiquement pas", "Kaum"), 3),
        ],
    ),
    (
        T(
            "I have blamed myself unnecessarily when things went wrong",
            "Ik heb mezelf onnodig verwijten gemaakt als er iets mis ging",
            "Je me suis reproché, sans raison, d'être responsable quand les choses allaient mal",
            "Ich habe mir unnötig Vorwürfe gemacht, wenn etwas schiefging",
        ),
        [
            (
                T(
                    "Yes, most of the time",
                    "Ja, meestal",
                    "Oui, la plupart du temps",
                    "Ja, meistens",
                ),
                3,
            ),
            (T("Yes, some of the time", "Ja, soms", "Oui, parfois", "Ja, manchmal"), 2),
            (T("Not very often", "Niet vaak", "Pas très souvent", "Nicht sehr oft"), 1),
            (T("No, never", "Nee, nooit", "Non, jamais", "Nein, nie"), 0),
        ],
    ),
    (
        T(
            "I have been anxious or worried for no good reason",
            "Ik ben zonder goede reden angstig of bezorgd geweest",
            "Je me suis sentie inquiète ou soucieuse sans motifs",
            "Ich war ohne guten Grund ängstlich oder besorgt",
        ),
        [
            (
                T(
                    "No, not at all",
                    "Nee, helemaal niet",
                    "Non, pas du tout",
                    "Nein, überhaupt nicht",
                ),
                0,
            ),
            (T("Hardly ever", "Zelden", "Presque jamais", "Selten"), 1),
            (T("Yes, sometimes", "Ja, soms", "Oui, parfois", "Ja, manchmal"), 2),
            (T("Yes, very often", "Ja, heel vaak", "Oui, très souvent", "Ja, sehr oft"), 3),
        ],
    ),
    (
        T(
            "I have felt scared or panicky for no very good reason",
            "Ik ben zonder goede reden angstig of paniekerig geweest",
            "Je me suis sentie effrayée ou paniquée sans vraiment de raison",
            "Ich war ohne wirklichen Grund erschrocken oder panisch",
        ),
        [
            (
                T("Yes, quite a lot", "Ja, heel vaak", "Oui, vraiment souvent", "Ja, ziemlich oft"),
                3,
            ),
            (T("Yes, sometimes", "Ja, soms", "Oui, parfois", "Ja, manchmal"), 2),
            (T("No, not much", "Nee, niet vaak", "Non, pas très souvent", "Nein, nicht oft"), 1),
            (
                T(
                    "No, not at all",
                    "Nee, helemaal niet",
                    "Non, pas du tout",
                    "Nein, überhaupt nicht",
                ),
                0,
            ),
        ],
    ),
    (
        T(
            "Things have been getting on top of me",
            "De dingen groeiden me boven het hoofd",
            "J'ai eu tendance à me sentir dépassée par les événements",
            "Mir ist alles zu viel geworden",
        ),
        [
            (
                T(
                    "Yes, most of the time I haven't been able to cope at all",
                    "Ja, meestal kon ik het helemaal niet aan",
                    "Oui, la plupart du temps, je me suis sentie incapable de faire face aux situations",
                    "Ja, meistens konnte ich überhaupt nicht damit umgehen",
                ),
                3,
            ),
            (
                T(
                    "Yes, sometimes I haven't been coping as well as usual",
                    "Ja, soms kon ik het minder goed aan dan anders",
                    "Oui, parfois, je ne me suis pas sentie aussi capable de faire face que d'habitude",
                    "Ja, manchmal kam ich nicht so gut zurecht wie sonst",
                ),
                2,
            ),
            (
                T(
                    "No, most of the time I have coped quite well",
                    "Nee, meestal kon ik het goed aan",
                    "Non, la plupart du temps, j'ai pu faire face aux situations",
                    "Nein, meistens kam ich gut zurecht",
                ),
                1,
            ),
            (
                T(
                    "No, I have been coping as well as ever",
                    "Nee, ik kon het even goed aan als altijd",
                    "Non, je me suis sentie aussi efficace que d'habitude",
                    "Nein, ich kam so gut zurecht wie immer",
                ),
                0,
            ),
        ],
    ),
    (
        T(
            "I have been so unhappy that I have had difficulty sleeping",
            "Ik was zo ongelukkig dat ik slecht sliep",
            "Je me suis sentie si malheureuse que j'ai eu des problèmes de sommeil",
            "Ich war so unglücklich, dass ich schlecht geschlafen habe",
        ),
        [
            (
                T(
                    "Yes, most of the time",
                    "Ja, meestal",
                    "Oui, la plupart du temps",
                    "Ja, meistens",
                ),
                3,
            ),
            (T("Yes, sometimes", "Ja, soms", "Oui, parfois", "Ja, manchmal"), 2),
            (T("Not very often", "Niet vaak", "Pas très souvent", "Nicht sehr oft"), 1),
            (
                T(
                    "No, not at all",
                    "Nee, helemaal niet",
                    "Non, pas du tout",
                    "Nein, überhaupt nicht",
                ),
                0,
            ),
        ],
    ),
    (
        T(
            "I have felt sad or miserable",
            "Ik voelde me somber of ellendig",
            "Je me suis sentie triste ou peu heureuse",
            "Ich habe mich traurig oder elend gefühlt",
        ),
        [
            (
                T(
                    "Yes, most of the time",
                    "Ja, meestal",
                    "Oui, la plupart du temps",
                    "Ja, meistens",
                ),
                3,
            ),
            (T("Yes, quite often", "Ja, vrij vaak", "Oui, très souvent", "Ja, ziemlich oft"), 2),
            (T("Not very often", "Niet vaak", "Pas très souvent", "Nicht sehr oft"), 1),
            (
                T(
                    "No, not at all",
                    "Nee, helemaal niet",
                    "Non, pas du tout",
                    "Nein, überhaupt nicht",
                ),
                0,
            ),
        ],
    ),
    (
        T(
            "I have been so unhappy that I have been crying",
            "Ik was zo ongelukkig dat ik heb gehuild",
            "Je me suis sentie si malheureuse que j'ai pleuré",
            "Ich war so unglücklich, dass ich geweint habe",
        ),
        [
            (
                T(
                    "Yes, most of the time",
                    "Ja, meestal",
                    "Oui, la plupart du temps",
                    "Ja, meistens",
                ),
                3,
            ),
            (T("Yes, quite often", "Ja, vrij vaak", "Oui, très souvent", "Ja, ziemlich oft"), 2),
            (
                T(
                    "Only occasionally",
                    "Alleen af en toe",
                    "Seulement de temps en temps",
                    "Nur gelegentlich",
                ),
                1,
            ),
            (T("No, never", "Nee, nooit", "Non, jamais", "Nein, nie"), 0),
        ],
    ),
    (
        T(
            "The thought of harming myself has occurred to me",
            "De gedachte om mezelf iets aan te doen is bij me opgekomen",
            "Il m'est arrivé de penser à me faire du mal",
            "Der Gedanke, mir selbst etwas anzutun, ist mir gekommen",
        ),
        [
            (T("Yes, quite often", "Ja, vrij vaak", "Oui, très souvent", "Ja, ziemlich oft"), 3),
            (T("Sometimes", "Soms", "Parfois", "Manchmal"), 2),
            (T("Hardly ever", "Bijna nooit", "Presque jamais", "Kaum jemals"), 1),
            (T("Never", "Nooit", "Jamais", "Nie"), 0),
        ],
    ),
]


def epds_answer_code(item: int, option: int) -> str:
    return f"q{item}-a{option}"


def epds_answers() -> list[dict[str, Any]]:
    out = []
    for index, (question, options) in enumerate(EPDS_ITEMS, start=1):
        for o_index, (names, weight) in enumerate(options, start=1):
            names = dict(names)
            for lang in ("nl-BE", "fr-BE"):
                if names[lang].casefold() == names["en"].casefold():  # pragma: no cover
                    raise SystemExit(f"EPDS answer {index}.{o_index}: {lang} equals English")
            out.append(
                concept(
                    epds_answer_code(index, o_index),
                    names,
                    f"EPDS item {index} ({question['en']}), answer {o_index} of 4 in the "
                    f"original order; scored {weight} (the weight is on the Questionnaire's "
                    "answer option, not here).",
                    basis="external",
                )
            )
    return out


def write_terminology() -> None:
    systems = [
        code_system(
            "bib-screening-element",
            "BiBScreeningElement",
            "BiB screening element",
            "Sections and computed values of the BiB screening and of screening instruments for "
            "which no LOINC code is available or confirmed (consent, indicator scores, the "
            "Whooley result, the GAD-2 total, the safety-alert item).",
            [concept(c, n, d) for c, n, d in ELEMENTS],
        ),
        code_system(
            "bib-screening-step",
            "BiBScreeningStep",
            "BiB screening step",
            "Kinds of next steps the stepped screening protocol plans (Tasks for the "
            "responsible professional).",
            [concept(c, n, d) for c, n, d in STEPS],
        ),
        code_system(
            "bib-screening-alert",
            "BiBScreeningAlert",
            "BiB screening safety alert",
            "Safety alerts a screening response raises at once, whatever its total score.",
            [concept(c, n, d) for c, n, d in ALERTS],
        ),
        code_system(
            "bib-epds-answer",
            "BiBEpdsAnswer",
            "EPDS answer options",
            "The answer options of the 10 EPDS items (Cox, Holden and Sagovsky 1987), one code "
            "per item and option in the original order, because no LOINC answer codes could be "
            "confirmed for them. Dutch, French and German are working translations, not the "
            "validated versions.",
            epds_answers(),
        ),
    ]
    for system in systems:
        write(TERMINOLOGY / f"CodeSystem-{system['id']}.json", system)
        write(TERMINOLOGY / f"ValueSet-{system['id']}.json", value_set(system))
    path = TERMINOLOGY / "CodeSystem-bib-screening-instrument.json"
    instruments = json.loads(path.read_text())
    known = {c["code"] for c in instruments["concept"]}
    for code, names, definition in NEW_INSTRUMENTS:
        if code not in known:
            instruments["concept"].append(concept(code, names, definition, basis="external"))
    instruments["count"] = len(instruments["concept"])
    write(path, instruments)


# -- Questionnaire building blocks --------------------------------------------------------------


def translations(names: dict[str, str]) -> dict[str, Any]:
    return {
        "extension": [
            {
                "url": CORE + "translation",
                "extension": [
                    {"url": "lang", "valueCode": lang},
                    {"url": "content", "valueString": names[lang]},
                ],
            }
            for lang in ("nl-BE", "fr-BE", "de")
        ]
    }


def text(names: dict[str, str]) -> dict[str, Any]:
    return {"text": names["en"], "_text": translations(names)}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def option(system: str, code: str, names: dict[str, str], weight: float | int) -> dict[str, Any]:
    return {
        "valueCoding": {
            **coding(system, code, names["en"]),
            "_display": translations(names),
        },
        "extension": [{"url": ITEM_WEIGHT, "valueDecimal": weight}],
    }


def expression_ext(url: str, expression: str, name: str | None = None,
                   language: str = "text/fhirpath") -> dict[str, Any]:  # fmt: skip
    value: dict[str, Any] = {"language": language, "expression": expression}
    if name:
        value["name"] = name
    return {"url": url, "valueExpression": value}


def variable(name: str, expression: str) -> dict[str, Any]:
    return expression_ext(CORE + "variable", expression, name)


def calculated(expression: str) -> dict[str, Any]:
    return expression_ext(SDC + "sdc-questionnaire-calculatedExpression", expression)


HIDDEN = {"url": CORE + "questionnaire-hidden", "valueBoolean": True}
SCORE_UNIT = {"url": CORE + "questionnaire-unit", "valueCoding": coding(UCUM, "{score}", "score")}
EXTRACT = {"url": SDC + "sdc-questionnaire-observationExtract", "valueBoolean": True}
COMPONENT = {"url": SDC + "sdc-questionnaire-observationExtract", "valueCode": "component"}
SURVEY = {
    "url": SDC + "sdc-questionnaire-observation-extract-category",
    "valueCodeableConcept": {
        "coding": [
            coding("http://terminology.hl7.org/CodeSystem/observation-category", "survey", "Survey")
        ]
    },
}
EXTRACT_ON_COMPLETE = {"url": f"{BIB}/StructureDefinition/questionnaire-extract-on-complete",
                       "valueBoolean": True}  # fmt: skip
WEIGHT_OF = "answer.valueCoding.extension('" + ITEM_WEIGHT + "').valueDecimal"
SUM = ".aggregate($this + $total, 0)"


def launch_context(name: str, type_: str, description: str) -> dict[str, Any]:
    return {
        "url": SDC + "sdc-questionnaire-launchContext",
        "extension": [
            {
                "url": "name",
                "valueCoding": coding("http://hl7.org/fhir/uv/sdc/CodeSystem/launchContext", name),
            },
            {"url": "type", "valueCode": type_},
            {"url": "description", "valueString": description},
        ],
    }


def translation_status(validated: dict[str, str]) -> list[dict[str, Any]]:
    """Which language versions are the validated ones (BiB extension)."""
    out = []
    for lang in LANGS:
        note = validated.get(lang)
        out.append(
            {
                "url": f"{BIB}/StructureDefinition/questionnaire-translation-status",
                "extension": [
                    {"url": "language", "valueCode": lang},
                    {"url": "validated", "valueBoolean": note is not None},
                    {
                        "url": "note",
                        "valueString": note
                        or "Working translation by the BiB server team, not a validated version "
                        "of the instrument: replace it with the validated translation before "
                        "clinical use.",
                    },
                ],
            }
        )
    return out


def safety_alert(code: str, display: str) -> dict[str, Any]:
    return {
        "url": f"{BIB}/StructureDefinition/questionnaire-safety-alert",
        "extension": [
            {"url": "code", "valueCoding": coding(ALERT, code, display)},
            {"url": "priority", "valueCode": "stat"},
            {
                "url": "due",
                "valueDuration": {"value": 1, "unit": "day", "system": UCUM, "code": "d"},
            },
        ],
    }


def questionnaire(id_: str, name: str, title: dict[str, str], instrument: str,
                  description: str, copyright_: str, items: list[dict[str, Any]],
                  extra_codes: list[dict[str, Any]] = (), experimental: bool = False,
                  validated: dict[str, str] | None = None, purpose: str | None = None,
                  extensions: list[dict[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": id_,
        "meta": {"profile": [f"{BIB}/StructureDefinition/bib-screening-questionnaire"]},
        "language": "en",
        "extension": [
            *translation_status(validated or {}),
            EXTRACT_ON_COMPLETE,
            SURVEY,
            launch_context("patient", "Patient", "The person screened (the subject)."),
            launch_context("user", "Practitioner", "The professional who screens."),
            *extensions,
        ],
        "url": f"{BIB}/Questionnaire/{id_}",
        "version": VERSION,
        "name": name,
        "title": title["en"],
        "_title": translations(title),
        "status": "active",
        "experimental": experimental,
        "subjectType": ["Patient"],
        "date": DATE,
        "publisher": PUBLISHER,
        "contact": CONTACT,
        "description": description,
        "jurisdiction": JURISDICTION,
        "copyright": copyright_,
        "code": [coding(INSTRUMENT, instrument), *extra_codes],
        "item": items,
    }
    if purpose:
        out["purpose"] = purpose
    return out


# -- shared instrument parts --------------------------------------------------------------------

LOINC_NOTICE = (
    "This material contains content from LOINC (http://loinc.org). LOINC is copyright © "
    "Regenstrief Institute, Inc. and the Logical Observation Identifiers Names and Codes (LOINC) "
    "Committee and is available at no cost under the license at http://loinc.org/license."
)
PFIZER = (
    "© Pfizer Inc. All rights reserved. Developed by Drs. Robert L. Spitzer, Janet B.W. "
    "Williams, Kurt Kroenke and colleagues, with an educational grant from Pfizer Inc. No "
    "permission required to reproduce, translate, display or distribute."
)
WORKING = (
    " The Dutch, French and German texts in this Questionnaire are working translations by the "
    "BiB server team, not the validated translations (see the translation-status extension)."
)
FREQUENCY = [  # LOINC answer list LL358-3
    ("LA6568-5", T("Not at all", "Helemaal niet", "Jamais", "Überhaupt nicht"), 0),
    (
        "LA6569-3",
        T("Several days", "Verscheidene dagen", "Plusieurs jours", "An einzelnen Tagen"),
        1,
    ),
    (
        "LA6570-1",
        T(
            "More than half the days",
            "Meer dan de helft van de dagen",
            "Plus de la moitié du temps",
            "An mehr als der Hälfte der Tage",
        ),
        2,
    ),
    (
        "LA6571-9",
        T("Nearly every day", "Bijna elke dag", "Presque tous les jours", "Beinahe jeden Tag"),
        3,
    ),
]
TWO_WEEKS = T(
    "Over the last 2 weeks, how often have you been bothered by the following problems?",
    "Hoe vaak heeft u in de afgelopen 2 weken last gehad van de volgende problemen?",
    "Au cours des 2 dernières semaines, à quelle fréquence avez-vous été gêné(e) par les "
    "problèmes suivants ?",
    "Wie oft fühlten Sie sich im Verlauf der letzten 2 Wochen durch die folgenden Beschwerden "
    "beeinträchtigt?",
)
PHQ_ITEMS = [
    (
        "44250-9",
        T(
            "Little interest or pleasure in doing things",
            "Weinig interesse of plezier in het doen van dingen",
            "Peu d'intérêt ou de plaisir à faire les choses",
            "Wenig Interesse oder Freude an Ihren Tätigkeiten",
        ),
    ),
    (
        "44255-8",
        T(
            "Feeling down, depressed, or hopeless",
            "Zich neerslachtig, depressief of hopeloos voelen",
            "Être triste, déprimé(e) ou désespéré(e)",
            "Niedergeschlagenheit, Schwermut oder Hoffnungslosigkeit",
        ),
    ),
    (
        "44259-0",
        T(
            "Trouble falling or staying asleep, or sleeping too much",
            "Moeite met in slaap vallen of doorslapen, of te veel slapen",
            "Difficultés à s'endormir ou à rester endormi(e), ou dormir trop",
            "Schwierigkeiten ein- oder durchzuschlafen oder vermehrter Schlaf",
        ),
    ),
    (
        "44254-1",
        T(
            "Feeling tired or having little energy",
            "Zich moe voelen of weinig energie hebben",
            "Se sentir fatigué(e) ou manquer d'énergie",
            "Müdigkeit oder Gefühl, keine Energie zu haben",
        ),
    ),
    (
        "44251-7",
        T(
            "Poor appetite or overeating",
            "Weinig eetlust of te veel eten",
            "Avoir peu d'appétit ou manger trop",
            "Verminderter Appetit oder übermäßiges Bedürfnis zu essen",
        ),
    ),
    (
        "44258-2",
        T(
            "Feeling bad about yourself - or that you are a failure or have let yourself "
            "or your family down",
            "Zich slecht voelen over uzelf, of het gevoel hebben dat u een mislukkeling bent "
            "of uzelf of uw familie heeft teleurgesteld",
            "Avoir une mauvaise opinion de vous-même, ou le sentiment d'être un(e) raté(e) "
            "ou d'avoir déçu votre famille ou vous-même",
            "Schlechte Meinung von sich selbst; Gefühl, ein Versager zu sein oder die "
            "Familie enttäuscht zu haben",
        ),
    ),
    (
        "44252-5",
        T(
            "Trouble concentrating on things, such as reading the newspaper or watching television",
            "Moeite met concentreren, bijvoorbeeld bij het lezen van de krant of televisiekijken",
            "Avoir du mal à vous concentrer, par exemple pour lire le journal ou regarder "
            "la télévision",
            "Schwierigkeiten, sich auf etwas zu konzentrieren, z. B. beim Zeitunglesen oder "
            "Fernsehen",
        ),
    ),
    (
        "44253-3",
        T(
            "Moving or speaking so slowly that other people could have noticed. Or the "
            "opposite - being so fidgety or restless that you have been moving around a "
            "lot more than usual",
            "Zo traag bewegen of praten dat anderen het konden merken, of juist zo onrustig "
            "of rusteloos zijn dat u veel meer beweegt dan gewoonlijk",
            "Bouger ou parler si lentement que d'autres l'ont remarqué, ou au contraire être "
            "si agité(e) que vous bougez beaucoup plus que d'habitude",
            "Verlangsamte Bewegungen oder Sprache, die anderen auffallen könnten, oder im "
            "Gegenteil Zappeligkeit oder Ruhelosigkeit mit stärkerem Bewegungsdrang als "
            "sonst",
        ),
    ),
    (
        "44260-8",
        T(
            "Thoughts that you would be better off dead, or of hurting yourself in some way",
            "Gedachten dat u beter dood zou zijn of dat u uzelf op een of andere manier iets "
            "zou aandoen",
            "Penser qu'il vaudrait mieux mourir ou envisager de vous faire du mal d'une "
            "manière ou d'une autre",
            "Gedanken, dass Sie lieber tot wären oder sich Leid zufügen möchten",
        ),
    ),
]
GAD_ITEMS = [
    (
        "69725-0",
        T(
            "Feeling nervous, anxious or on edge",
            "Zich nerveus, angstig of gespannen voelen",
            "Se sentir nerveux(se), anxieux(se) ou à bout",
            "Nervosität, Ängstlichkeit oder Anspannung",
        ),
    ),
    (
        "68509-9",
        T(
            "Not being able to stop or control worrying",
            "Niet kunnen stoppen met piekeren of het piekeren niet onder controle hebben",
            "Être incapable d'arrêter de s'inquiéter ou de contrôler ses inquiétudes",
            "Nicht in der Lage sein, Sorgen zu stoppen oder zu kontrollieren",
        ),
    ),
    (
        "69733-4",
        T(
            "Worrying too much about different things",
            "Zich te veel zorgen maken over verschillende dingen",
            "S'inquiéter trop à propos de différentes choses",
            "Übermäßige Sorgen bezüglich verschiedener Angelegenheiten",
        ),
    ),
    (
        "69734-2",
        T(
            "Trouble relaxing",
            "Moeite hebben om te ontspannen",
            "Avoir du mal à se détendre",
            "Schwierigkeiten zu entspannen",
        ),
    ),
    (
        "69735-9",
        T(
            "Being so restless that it is hard to sit still",
            "Zo rusteloos zijn dat stilzitten moeilijk is",
            "Être si agité(e) qu'il est difficile de tenir en place",
            "So ruhelos, dass Stillsitzen schwerfällt",
        ),
    ),
    (
        "69689-8",
        T(
            "Becoming easily annoyed or irritable",
            "Snel geërgerd of prikkelbaar zijn",
            "Devenir facilement contrarié(e) ou irritable",
            "Schnelle Verärgerung oder Gereiztheit",
        ),
    ),
    (
        "69736-7",
        T(
            "Feeling afraid, as if something awful might happen",
            "Bang zijn dat er iets vreselijks zou kunnen gebeuren",
            "Avoir peur que quelque chose d'épouvantable puisse arriver",
            "Gefühl der Angst, so als würde etwas Schlimmes passieren",
        ),
    ),
]
TOTAL_OF_ALL = "%resource.item." + WEIGHT_OF + SUM  # every weighted answer of the response


def stem(link_id: str, names: dict[str, str]) -> dict[str, Any]:
    return {"linkId": link_id, "type": "display", **text(names)}


def frequency_item(link_id: str, code: str, names: dict[str, str], prefix: str) -> dict[str, Any]:
    return {
        "linkId": link_id,
        "code": [coding(LOINC, code, names["en"])],
        "prefix": prefix,
        **text(names),
        "type": "choice",
        "required": True,
        "answerOption": [option(LOINC, c, n, w) for c, n, w in FREQUENCY],
    }


def total_item(link_id: str, codes: list[dict[str, Any]], names: dict[str, str],
               expression: str) -> dict[str, Any]:  # fmt: skip
    return {
        "extension": [calculated(expression), HIDDEN, SCORE_UNIT, EXTRACT],
        "linkId": link_id,
        "code": codes,
        **text(names),
        "type": "integer",
        "readOnly": True,
    }


def alert_item(link_id: str, question: str, names: dict[str, str]) -> dict[str, Any]:
    return {
        "extension": [
            calculated(f"%resource.item.where(linkId='{question}')." + WEIGHT_OF + " > 0"),
            HIDDEN,
            safety_alert("self-harm-thoughts", "Thoughts of self-harm reported"),
        ],
        "linkId": link_id,
        "code": [coding(ELEMENT, "self-harm-alert", "Self-harm safety alert")],
        **text(names),
        "type": "boolean",
        "readOnly": True,
    }


ALERT_TEXT = T(
    "Safety alert: thoughts of self-harm (computed by the server)",
    "Veiligheidsalarm: gedachten aan zelfbeschadiging (berekend door de server)",
    "Alerte de sécurité : pensées d'automutilation (calculée par le serveur)",
    "Sicherheitsalarm: Gedanken an Selbstverletzung (vom Server berechnet)",
)
TOTAL_TEXT = T("Total score", "Totaalscore", "Score total", "Gesamtpunktwert")


def phq(id_: str, name: str, title: dict[str, str], count: int, panel: str, total: str,
        alert: bool) -> dict[str, Any]:  # fmt: skip
    items = [stem(f"{id_}-stem", TWO_WEEKS)]
    for index, (code, names) in enumerate(PHQ_ITEMS[:count], start=1):
        items.append(frequency_item(f"{id_}-{index}", code, names, f"{index}."))
    items.append(total_item(f"{id_}-total", [coding(LOINC, total)], TOTAL_TEXT, TOTAL_OF_ALL))
    if alert:
        items.append(alert_item(f"{id_}-self-harm-alert", f"{id_}-{count}", ALERT_TEXT))
    return questionnaire(
        id_, name, title, id_,
        f"{title['en']}: {count} items scored 0-3 (LOINC answer list LL358-3); the server "
        f"computes the total (LOINC {total})"
        + (" and raises a safety alert when item 9 is above 0, whatever the total." if alert else "."),
        f"{title['en']} {PFIZER}{WORKING} {LOINC_NOTICE}",
        items,
        extra_codes=[coding(LOINC, panel)],
    )  # fmt: skip


def gad(id_: str, name: str, title: dict[str, str], count: int, panel: str | None,
        total: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    items = [stem(f"{id_}-stem", TWO_WEEKS)]
    for index, (code, names) in enumerate(GAD_ITEMS[:count], start=1):
        items.append(frequency_item(f"{id_}-{index}", code, names, f"{index}."))
    items.append(total_item(f"{id_}-total", total, TOTAL_TEXT, TOTAL_OF_ALL))
    return questionnaire(
        id_, name, title, id_,
        f"{title['en']}: {count} items scored 0-3 (LOINC answer list LL358-3); the server "
        "computes the total.",
        f"{title['en']} {PFIZER}{WORKING} {LOINC_NOTICE}",
        items,
        extra_codes=[coding(LOINC, panel)] if panel else [],
    )  # fmt: skip


EPDS_COPYRIGHT = (
    "© 1987 The Royal College of Psychiatrists. The Edinburgh Postnatal Depression Scale may be "
    "photocopied by individual researchers or clinicians for their own use without seeking "
    "permission from the publishers. The scale must be copied in full and all copies must "
    "acknowledge the following source: Cox, J.L., Holden, J.M., & Sagovsky, R. (1987). "
    "Detection of postnatal depression. Development of the 10-item Edinburgh Postnatal "
    "Depression Scale. British Journal of Psychiatry, 150, 782-786. Written permission must be "
    "obtained from the Royal College of Psychiatrists for copying and distribution to others or "
    "for republication (in print, online or by any other medium)." + WORKING + " " + LOINC_NOTICE
)
EPDS_STEM = T(
    "As you are pregnant or have recently had a baby, we would like to know how you are feeling. "
    "Please choose the answer that comes closest to how you have felt IN THE PAST 7 DAYS, not "
    "just how you feel today.",
    "Omdat u zwanger bent of onlangs een baby kreeg, willen we graag weten hoe u zich voelt. "
    "Kies het antwoord dat het best beschrijft hoe u zich DE AFGELOPEN 7 DAGEN heeft gevoeld, "
    "niet alleen vandaag.",
    "Comme vous êtes enceinte ou venez d'avoir un bébé, nous aimerions savoir comment vous vous "
    "sentez. Choisissez la réponse qui correspond le mieux à ce que vous avez ressenti AU COURS "
    "DES 7 DERNIERS JOURS, et pas seulement aujourd'hui.",
    "Da Sie schwanger sind oder vor kurzem ein Baby bekommen haben, möchten wir wissen, wie es "
    "Ihnen geht. Wählen Sie die Antwort, die am besten beschreibt, wie Sie sich IN DEN LETZTEN 7 "
    "TAGEN gefühlt haben, nicht nur heute.",
)


def epds() -> dict[str, Any]:
    items: list[dict[str, Any]] = [stem("epds-stem", EPDS_STEM)]
    for index, (question, options) in enumerate(EPDS_ITEMS, start=1):
        items.append(
            {
                "linkId": f"epds-{index}",
                "prefix": f"{index}.",
                **text(question),
                "type": "choice",
                "required": True,
                "answerOption": [
                    option(EPDS_ANSWER, epds_answer_code(index, o), names, weight)
                    for o, (names, weight) in enumerate(options, start=1)
                ],
            }
        )
    items.append(total_item("epds-total", [coding(LOINC, "99046-5")], TOTAL_TEXT, TOTAL_OF_ALL))
    items.append(alert_item("epds-self-harm-alert", "epds-10", ALERT_TEXT))
    title = T("Edinburgh Postnatal Depression Scale (EPDS)",
              "Edinburgh Postnatale Depressieschaal (EPDS)",
              "Échelle de dépression postnatale d'Édimbourg (EPDS)",
              "Edinburgh-Postnatale-Depressions-Skala (EPDS)")  # fmt: skip
    return questionnaire(
        "epds", "EPDS", title, "epds",
        "EPDS: 10 items scored 0-3; items 3 and 5 to 10 are reverse-scored, which is data here "
        "(each answer option carries its weight). The server computes the total (LOINC "
        "99046-5) and raises a safety alert when item 10 (thoughts of self-harm) is above 0, "
        "whatever the total.",
        EPDS_COPYRIGHT,
        items,
        extra_codes=[coding(LOINC, "71354-5", "Edinburgh Postnatal Depression Scale [EPDS]")],
    )  # fmt: skip


WHOOLEY_ITEMS = [
    T(
        "During the past month, have you often been bothered by feeling down, depressed or hopeless?",
        "Heeft u in de afgelopen maand vaak last gehad van een neerslachtig, depressief of "
        "hopeloos gevoel?",
        "Au cours du dernier mois, avez-vous souvent été gênée par un sentiment de tristesse, de "
        "déprime ou de désespoir ?",
        "Haben Sie sich im letzten Monat oft niedergeschlagen, schwermütig oder hoffnungslos "
        "gefühlt?",
    ),
    T(
        "During the past month, have you often been bothered by having little interest or pleasure "
        "in doing things?",
        "Heeft u in de afgelopen maand vaak last gehad van weinig interesse of plezier in het doen "
        "van dingen?",
        "Au cours du dernier mois, avez-vous souvent été gênée par un manque d'intérêt ou de "
        "plaisir à faire les choses ?",
        "Hatten Sie im letzten Monat oft wenig Interesse oder Freude an Ihren Tätigkeiten?",
    ),
]


def whooley() -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {
            "linkId": f"whooley-{i}",
            "prefix": f"{i}.",
            **text(t),
            "type": "boolean",
            "required": True,
        }
        for i, t in enumerate(WHOOLEY_ITEMS, start=1)
    ]
    items.append(
        {
            "extension": [
                calculated(
                    "%resource.item.where(linkId='whooley-1' or linkId='whooley-2')"
                    ".answer.valueBoolean contains true"
                ),
                HIDDEN,
                EXTRACT,
            ],
            "linkId": "whooley-positive",
            "code": [coding(ELEMENT, "whooley-positive", "Whooley questions positive")],
            **text(T("Whooley questions positive (yes to either)",
                     "Whooley-vragen positief (ja op een van beide)",
                     "Questions de Whooley positives (oui à l'une des deux)",
                     "Whooley-Fragen positiv (Ja auf eine der beiden)")),
            "type": "boolean",
            "readOnly": True,
        }
    )  # fmt: skip
    title = T("Whooley questions", "Whooley-vragen", "Questions de Whooley", "Whooley-Fragen")
    return questionnaire(
        "whooley", "Whooley", title, "whooley",
        "The two Whooley case-finding questions for depression (past month, yes/no); positive if "
        "either is yes (NICE CG192). No LOINC panel exists for them; the result has a BiB code.",
        "Whooley MA, Avins AL, Miranda J, Browner WS. Case-finding instruments for depression: "
        "two questions are as good as many. J Gen Intern Med 1997;12(7):439-445. The questions "
        "are published in this article and recommended by NICE (CG192); no licence is attached "
        "to them: cite the source." + WORKING,
        items,
    )  # fmt: skip


# -- the BiB psychosocial screening (placeholder questions, replaceable) ------------------------
# (indicator code, threshold, [(question, [(answer, weight)])]); weights 0-4 in 0.5 steps.

A = T  # answer labels use the same table helper
BIB_INDICATORS: list[
    tuple[str, float, list[tuple[dict[str, str], list[tuple[dict[str, str], float]]]]]
] = [
    (
        "country-of-birth",
        1.5,
        [
            (
                T(
                    "In which country were you born?",
                    "In welk land bent u geboren?",
                    "Dans quel pays êtes-vous née ?",
                    "In welchem Land sind Sie geboren?",
                ),
                [
                    (A("Belgium", "België", "Belgique", "Belgien"), 0),
                    (
                        A(
                            "Another country of the European Union",
                            "Een ander land van de Europese Unie",
                            "Un autre pays de l'Union européenne",
                            "Ein anderes Land der Europäischen Union",
                        ),
                        0.5,
                    ),
                    (
                        A(
                            "A country outside the European Union",
                            "Een land buiten de Europese Unie",
                            "Un pays hors de l'Union européenne",
                            "Ein Land außerhalb der Europäischen Union",
                        ),
                        1.5,
                    ),
                ],
            ),
            (
                T(
                    "How long have you been living in Belgium?",
                    "Hoelang woont u al in België?",
                    "Depuis combien de temps vivez-vous en Belgique ?",
                    "Wie lange leben Sie schon in Belgien?",
                ),
                [
                    (
                        A(
                            "All my life or more than 5 years",
                            "Altijd of meer dan 5 jaar",
                            "Depuis toujours ou plus de 5 ans",
                            "Schon immer oder mehr als 5 Jahre",
                        ),
                        0,
                    ),
                    (A("1 to 5 years", "1 tot 5 jaar", "1 à 5 ans", "1 bis 5 Jahre"), 0.5),
                    (
                        A(
                            "Less than 1 year",
                            "Minder dan 1 jaar",
                            "Moins d'un an",
                            "Weniger als 1 Jahr",
                        ),
                        1.5,
                    ),
                ],
            ),
        ],
    ),
    (
        "education",
        2,
        [
            (
                T(
                    "What is the highest level of education you have completed?",
                    "Wat is het hoogste diploma dat u heeft behaald?",
                    "Quel est le diplôme le plus élevé que vous avez obtenu ?",
                    "Was ist Ihr höchster Bildungsabschluss?",
                ),
                [
                    (
                        A(
                            "No diploma or primary school",
                            "Geen diploma of lager onderwijs",
                            "Aucun diplôme ou enseignement primaire",
                            "Kein Abschluss oder Grundschule",
                        ),
                        3,
                    ),
                    (
                        A(
                            "Lower secondary school",
                            "Lager secundair onderwijs",
                            "Secondaire inférieur",
                            "Unterstufe der Sekundarschule",
                        ),
                        2,
                    ),
                    (
                        A(
                            "Upper secondary school",
                            "Hoger secundair onderwijs",
                            "Secondaire supérieur",
                            "Oberstufe der Sekundarschule",
                        ),
                        1,
                    ),
                    (
                        A(
                            "Higher education",
                            "Hoger onderwijs",
                            "Enseignement supérieur",
                            "Hochschulbildung",
                        ),
                        0,
                    ),
                ],
            ),
        ],
    ),
    (
        "anxiety",
        2.5,
        [
            (
                T(
                    "During the last two weeks, have you often felt nervous, anxious or on edge?",
                    "Heeft u zich de voorbije twee weken vaak nerveus, angstig of gespannen gevoeld?",
                    "Ces deux dernières semaines, vous êtes-vous souvent sentie nerveuse, anxieuse ou tendue ?",
                    "Haben Sie sich in den letzten zwei Wochen oft nervös, ängstlich oder angespannt gefühlt?",
                ),
                [
                    (A("No", "Nee", "Non", "Nein"), 0),
                    (A("Sometimes", "Soms", "Parfois", "Manchmal"), 1),
                    (A("Often", "Vaak", "Souvent", "Oft"), 2.5),
                    (A("Almost always", "Bijna altijd", "Presque toujours", "Fast immer"), 4),
                ],
            ),
            (
                T(
                    "Do you worry a lot about the pregnancy or the birth?",
                    "Maakt u zich veel zorgen over de zwangerschap of de bevalling?",
                    "Vous inquiétez-vous beaucoup pour la grossesse ou l'accouchement ?",
                    "Machen Sie sich viele Sorgen um die Schwangerschaft oder die Geburt?",
                ),
                [
                    (A("No", "Nee", "Non", "Nein"), 0),
                    (A("A little", "Een beetje", "Un peu", "Ein wenig"), 0.5),
                    (A("A lot", "Veel", "Beaucoup", "Sehr"), 1.5),
                ],
            ),
        ],
    ),
    (
        "employment-status",
        2,
        [
            (
                T(
                    "What is your work situation at the moment?",
                    "Wat is op dit moment uw werksituatie?",
                    "Quelle est votre situation professionnelle actuellement ?",
                    "Wie ist Ihre derzeitige berufliche Situation?",
                ),
                [
                    (
                        A(
                            "Employed or self-employed",
                            "Werknemer of zelfstandige",
                            "Salariée ou indépendante",
                            "Angestellt oder selbstständig",
                        ),
                        0,
                    ),
                    (A("Student", "Student(e)", "Étudiante", "Studentin"), 0.5),
                    (
                        A(
                            "At home by choice",
                            "Thuis uit eigen keuze",
                            "Au foyer par choix",
                            "Freiwillig zu Hause",
                        ),
                        1,
                    ),
                    (
                        A(
                            "Unemployed or unable to work",
                            "Werkloos of arbeidsongeschikt",
                            "Sans emploi ou en incapacité de travail",
                            "Arbeitslos oder arbeitsunfähig",
                        ),
                        2,
                    ),
                ],
            ),
        ],
    ),
    (
        "partner-employment-status",
        1.5,
        [
            (
                T(
                    "Do you have a partner, and does your partner have paid work?",
                    "Heeft u een partner, en heeft uw partner betaald werk?",
                    "Avez-vous un ou une partenaire, et a-t-il ou elle un travail rémunéré ?",
                    "Haben Sie einen Partner oder eine Partnerin mit bezahlter Arbeit?",
                ),
                [
                    (
                        A(
                            "Yes, my partner has paid work",
                            "Ja, mijn partner heeft betaald werk",
                            "Oui, mon ou ma partenaire a un travail rémunéré",
                            "Ja, mein Partner hat bezahlte Arbeit",
                        ),
                        0,
                    ),
                    (
                        A(
                            "Yes, but my partner has no paid work",
                            "Ja, maar mijn partner heeft geen betaald werk",
                            "Oui, mais sans travail rémunéré",
                            "Ja, aber ohne bezahlte Arbeit",
                        ),
                        1.5,
                    ),
                    (
                        A(
                            "I have no partner",
                            "Ik heb geen partner",
                            "Je n'ai pas de partenaire",
                            "Ich habe keinen Partner",
                        ),
                        1.5,
                    ),
                ],
            ),
        ],
    ),
    (
        "communication",
        1.5,
        [
            (
                T(
                    "Can you talk with your care providers in Dutch, French or English without help?",
                    "Kan u zonder hulp met uw zorgverleners praten in het Nederlands, Frans of Engels?",
                    "Pouvez-vous parler avec vos soignants en français, néerlandais ou anglais sans aide ?",
                    "Können Sie ohne Hilfe auf Deutsch, Niederländisch, Französisch oder Englisch mit "
                    "Ihren Betreuern sprechen?",
                ),
                [
                    (
                        A(
                            "Yes, without difficulty",
                            "Ja, zonder moeite",
                            "Oui, sans difficulté",
                            "Ja, ohne Schwierigkeiten",
                        ),
                        0,
                    ),
                    (
                        A(
                            "With some difficulty",
                            "Met wat moeite",
                            "Avec quelques difficultés",
                            "Mit einigen Schwierigkeiten",
                        ),
                        1.5,
                    ),
                    (
                        A(
                            "No, I need an interpreter",
                            "Nee, ik heb een tolk nodig",
                            "Non, j'ai besoin d'un interprète",
                            "Nein, ich brauche einen Dolmetscher",
                        ),
                        3,
                    ),
                ],
            ),
        ],
    ),
    (
        "income",
        2.5,
        [
            (
                T(
                    "How easy is it for your household to make ends meet each month?",
                    "Hoe gemakkelijk komt uw gezin elke maand rond?",
                    "Votre ménage arrive-t-il facilement à boucler chaque fin de mois ?",
                    "Wie leicht kommt Ihr Haushalt jeden Monat über die Runden?",
                ),
                [
                    (A("Easily", "Gemakkelijk", "Facilement", "Leicht"), 0),
                    (
                        A(
                            "With some difficulty",
                            "Met wat moeite",
                            "Avec quelques difficultés",
                            "Mit einigen Schwierigkeiten",
                        ),
                        1.5,
                    ),
                    (
                        A(
                            "With great difficulty",
                            "Met grote moeite",
                            "Très difficilement",
                            "Mit großen Schwierigkeiten",
                        ),
                        3,
                    ),
                ],
            ),
            (
                T(
                    "In the last 12 months, were you ever unable to pay for food, rent or energy?",
                    "Kon u de voorbije 12 maanden ooit eten, huur of energie niet betalen?",
                    "Au cours des 12 derniers mois, vous est-il arrivé de ne pas pouvoir payer la "
                    "nourriture, le loyer ou l'énergie ?",
                    "Konnten Sie in den letzten 12 Monaten einmal Essen, Miete oder Energie nicht bezahlen?",
                ),
                [(A("No", "Nee", "Non", "Nein"), 0), (A("Yes", "Ja", "Oui", "Ja"), 2)],
            ),
        ],
    ),
    (
        "social-support",
        2,
        [
            (
                T(
                    "Is there someone you can count on for practical help during the pregnancy and after "
                    "the birth?",
                    "Is er iemand op wie u kan rekenen voor praktische hulp tijdens de zwangerschap en na "
                    "de bevalling?",
                    "Y a-t-il quelqu'un sur qui vous pouvez compter pour une aide pratique pendant la "
                    "grossesse et après la naissance ?",
                    "Gibt es jemanden, auf dessen praktische Hilfe Sie während der Schwangerschaft und "
                    "nach der Geburt zählen können?",
                ),
                [
                    (A("Yes", "Ja", "Oui", "Ja"), 0),
                    (A("Partly", "Gedeeltelijk", "En partie", "Teilweise"), 1.5),
                    (A("No", "Nee", "Non", "Nein"), 3),
                ],
            ),
            (
                T(
                    "Do you feel lonely?",
                    "Voelt u zich eenzaam?",
                    "Vous sentez-vous seule ?",
                    "Fühlen Sie sich einsam?",
                ),
                [
                    (
                        A(
                            "Never or rarely",
                            "Nooit of zelden",
                            "Jamais ou rarement",
                            "Nie oder selten",
                        ),
                        0,
                    ),
                    (A("Sometimes", "Soms", "Parfois", "Manchmal"), 0.5),
                    (A("Often", "Vaak", "Souvent", "Oft"), 1.5),
                ],
            ),
        ],
    ),
    (
        "residence-status",
        2,
        [
            (
                T(
                    "What is your residence status in Belgium?",
                    "Wat is uw verblijfsstatus in België?",
                    "Quel est votre statut de séjour en Belgique ?",
                    "Welchen Aufenthaltsstatus haben Sie in Belgien?",
                ),
                [
                    (
                        A(
                            "Belgian, EU citizen or permanent residence",
                            "Belg, EU-burger of permanent verblijf",
                            "Belge, citoyenne de l'UE ou séjour permanent",
                            "Belgierin, EU-Bürgerin oder Daueraufenthalt",
                        ),
                        0,
                    ),
                    (
                        A(
                            "Temporary residence permit",
                            "Tijdelijke verblijfsvergunning",
                            "Titre de séjour temporaire",
                            "Befristete Aufenthaltserlaubnis",
                        ),
                        1,
                    ),
                    (
                        A(
                            "Application in progress",
                            "Aanvraag lopende",
                            "Demande en cours",
                            "Antrag läuft",
                        ),
                        2,
                    ),
                    (
                        A(
                            "No residence permit",
                            "Geen verblijfsvergunning",
                            "Pas de titre de séjour",
                            "Keine Aufenthaltserlaubnis",
                        ),
                        4,
                    ),
                ],
            ),
            (
                T(
                    "Are you insured with a health insurance fund (mutualiteit/mutualité)?",
                    "Bent u aangesloten bij een ziekenfonds?",
                    "Êtes-vous affiliée à une mutualité ?",
                    "Sind Sie bei einer Krankenkasse versichert?",
                ),
                [(A("Yes", "Ja", "Oui", "Ja"), 0), (A("No", "Nee", "Non", "Nein"), 2)],
            ),
        ],
    ),
    (
        "depression",
        2.5,
        [
            (
                T(
                    "During the last two weeks, have you often felt down, depressed or hopeless?",
                    "Heeft u zich de voorbije twee weken vaak neerslachtig, somber of hopeloos gevoeld?",
                    "Ces deux dernières semaines, vous êtes-vous souvent sentie abattue, déprimée ou "
                    "désespérée ?",
                    "Haben Sie sich in den letzten zwei Wochen oft niedergeschlagen, bedrückt oder "
                    "hoffnungslos gefühlt?",
                ),
                [
                    (A("No", "Nee", "Non", "Nein"), 0),
                    (A("Sometimes", "Soms", "Parfois", "Manchmal"), 1),
                    (A("Often", "Vaak", "Souvent", "Oft"), 2.5),
                    (A("Almost always", "Bijna altijd", "Presque toujours", "Fast immer"), 4),
                ],
            ),
            (
                T(
                    "During the last two weeks, have you had little interest or pleasure in doing things?",
                    "Had u de voorbije twee weken weinig interesse of plezier in dingen?",
                    "Ces deux dernières semaines, avez-vous eu peu d'intérêt ou de plaisir à faire les "
                    "choses ?",
                    "Hatten Sie in den letzten zwei Wochen wenig Interesse oder Freude an Ihren "
                    "Tätigkeiten?",
                ),
                [
                    (A("No", "Nee", "Non", "Nein"), 0),
                    (A("Sometimes", "Soms", "Parfois", "Manchmal"), 1),
                    (A("Often", "Vaak", "Souvent", "Oft"), 2),
                    (A("Almost always", "Bijna altijd", "Presque toujours", "Fast immer"), 3),
                ],
            ),
        ],
    ),
    (
        "housing",
        2,
        [
            (
                T(
                    "What is your housing situation?",
                    "Wat is uw woonsituatie?",
                    "Quelle est votre situation de logement ?",
                    "Wie ist Ihre Wohnsituation?",
                ),
                [
                    (
                        A(
                            "A suitable home of my own or rented",
                            "Een geschikte eigen of gehuurde woning",
                            "Un logement adapté, en propriété ou en location",
                            "Eine geeignete eigene oder gemietete Wohnung",
                        ),
                        0,
                    ),
                    (
                        A(
                            "Temporarily with family or friends",
                            "Tijdelijk bij familie of vrienden",
                            "Temporairement chez de la famille ou des amis",
                            "Vorübergehend bei Familie oder Freunden",
                        ),
                        2,
                    ),
                    (
                        A(
                            "Overcrowded or unsuitable",
                            "Overbewoond of ongeschikt",
                            "Surpeuplé ou inadapté",
                            "Überbelegt oder ungeeignet",
                        ),
                        2,
                    ),
                    (
                        A(
                            "A shelter, or no fixed home",
                            "Een opvang, of geen vaste woonplaats",
                            "Un hébergement d'urgence, ou pas de logement fixe",
                            "Eine Notunterkunft oder kein fester Wohnsitz",
                        ),
                        4,
                    ),
                ],
            ),
            (
                T(
                    "Is your home safe and suitable for a baby (heating, space, hygiene)?",
                    "Is uw woning veilig en geschikt voor een baby (verwarming, ruimte, hygiëne)?",
                    "Votre logement est-il sûr et adapté à un bébé (chauffage, espace, hygiène) ?",
                    "Ist Ihre Wohnung sicher und für ein Baby geeignet (Heizung, Platz, Hygiene)?",
                ),
                [
                    (A("Yes", "Ja", "Oui", "Ja"), 0),
                    (A("Partly", "Gedeeltelijk", "En partie", "Teilweise"), 1),
                    (A("No", "Nee", "Non", "Nein"), 2),
                ],
            ),
        ],
    ),
    (
        "substance-use",
        2,
        [
            (
                T(
                    "Since you knew you were pregnant, have you drunk alcohol?",
                    "Heeft u alcohol gedronken sinds u weet dat u zwanger bent?",
                    "Avez-vous bu de l'alcool depuis que vous savez que vous êtes enceinte ?",
                    "Haben Sie Alkohol getrunken, seit Sie wissen, dass Sie schwanger sind?",
                ),
                [
                    (A("No", "Nee", "Non", "Nein"), 0),
                    (A("Occasionally", "Af en toe", "Occasionnellement", "Gelegentlich"), 2),
                    (A("Regularly", "Regelmatig", "Régulièrement", "Regelmäßig"), 4),
                ],
            ),
            (
                T(
                    "Since you knew you were pregnant, have you smoked tobacco or used drugs?",
                    "Heeft u tabak gerookt of drugs gebruikt sinds u weet dat u zwanger bent?",
                    "Avez-vous fumé du tabac ou consommé des drogues depuis que vous savez que vous êtes "
                    "enceinte ?",
                    "Haben Sie Tabak geraucht oder Drogen genommen, seit Sie wissen, dass Sie schwanger "
                    "sind?",
                ),
                [
                    (A("No", "Nee", "Non", "Nein"), 0),
                    (A("Tobacco", "Tabak", "Du tabac", "Tabak"), 1.5),
                    (A("Drugs", "Drugs of verdovende middelen", "Des drogues", "Drogen"), 4),
                ],
            ),
        ],
    ),
    (
        "violence",
        2,
        [
            (
                T(
                    "Has someone close to you hurt you, threatened you or made you afraid in the past year?",
                    "Heeft iemand uit uw omgeving u het voorbije jaar pijn gedaan, bedreigd of bang gemaakt?",
                    "Au cours de l'année écoulée, quelqu'un de votre entourage vous a-t-il fait du mal, "
                    "menacée ou fait peur ?",
                    "Hat Ihnen im letzten Jahr jemand aus Ihrem Umfeld wehgetan, Sie bedroht oder Ihnen "
                    "Angst gemacht?",
                ),
                [
                    (A("No", "Nee", "Non", "Nein"), 0),
                    (
                        A(
                            "Yes, in the past",
                            "Ja, in het verleden",
                            "Oui, dans le passé",
                            "Ja, in der Vergangenheit",
                        ),
                        2,
                    ),
                    (
                        A(
                            "Yes, still now",
                            "Ja, nog altijd",
                            "Oui, encore maintenant",
                            "Ja, immer noch",
                        ),
                        4,
                    ),
                ],
            ),
        ],
    ),
]
INDICATOR_NAMES = {
    "country-of-birth": T("Country of birth", "Geboorteland", "Pays de naissance", "Geburtsland"),
    "education": T("Education", "Opleiding", "Formation", "Bildung"),
    "anxiety": T("Anxiety", "Angst", "Anxiété", "Angst"),
    "employment-status": T(
        "Employment status", "Professionele status", "Statut professionnel", "Beruflicher Status"
    ),
    "partner-employment-status": T(
        "Partner's employment status",
        "Professionele status van de partner",
        "Statut professionnel du partenaire",
        "Beruflicher Status des Partners",
    ),
    "communication": T("Communication", "Communicatie", "Communication", "Kommunikation"),
    "income": T("Income", "Inkomen", "Revenus", "Einkommen"),
    "social-support": T(
        "Social support", "Sociale steun", "Soutien social", "Soziale Unterstützung"
    ),
    "residence-status": T(
        "Residence status", "Verblijfsstatus", "Statut de séjour", "Aufenthaltsstatus"
    ),
    "depression": T("Depression", "Depressie", "Dépression", "Depression"),
    "housing": T("Housing", "Huisvesting", "Logement", "Wohnen"),
    "substance-use": T(
        "Substance use", "Middelengebruik", "Consommation de substances", "Substanzkonsum"
    ),
    "violence": T("Violence", "Geweld", "Violence", "Gewalt"),
}
HIGH_RISK = ("depression", "anxiety", "violence", "substance-use")
ANSWER_SYSTEM = f"{BIB}/CodeSystem/bib-screening-answer"


def bib_screening() -> dict[str, Any]:
    consent_given = "consent-given"
    consent = {
        "extension": [
            {
                "url": SDC + "sdc-questionnaire-definitionExtract",
                "extension": [
                    {"url": "definition", "valueCanonical": CORE + "Consent"},
                ],
            },
            *_consent_values(),
        ],
        "linkId": "consent",
        "code": [coding(ELEMENT, "consent", "Consent to the screening")],
        **text(T("Consent", "Toestemming", "Consentement", "Einwilligung")),
        "type": "group",
        "required": True,
        "item": [
            {
                "linkId": "consent-informed",
                "code": [coding(ELEMENT, "consent-informed")],
                **text(T(
                    "The woman was told why she is asked these questions, who will see the "
                    "results, and that she may refuse or stop at any time",
                    "De vrouw werd uitgelegd waarom deze vragen gesteld worden, wie de resultaten "
                    "ziet, en dat ze mag weigeren of stoppen wanneer ze wil",
                    "La femme a été informée de la raison de ces questions, de qui verra les "
                    "résultats et de son droit de refuser ou d'arrêter à tout moment",
                    "Der Frau wurde erklärt, warum ihr diese Fragen gestellt werden, wer die "
                    "Ergebnisse sieht und dass sie jederzeit ablehnen oder abbrechen kann",
                )),
                "type": "boolean",
                "required": True,
            },
            {
                "linkId": consent_given,
                "code": [coding(ELEMENT, "consent-given")],
                **text(T("She agrees to answer the screening questions",
                         "Ze stemt in om de screeningsvragen te beantwoorden",
                         "Elle accepte de répondre aux questions du dépistage",
                         "Sie ist einverstanden, die Screening-Fragen zu beantworten")),
                "type": "boolean",
                "required": True,
                "enableWhen": [{"question": "consent-informed", "operator": "=", "answerBoolean": True}],
            },
        ],
    }  # fmt: skip
    pregnancy = {
        "linkId": "pregnancy",
        "code": [coding(ELEMENT, "pregnancy", "Pregnancy at the time of screening")],
        **text(T("Pregnancy", "Zwangerschap", "Grossesse", "Schwangerschaft")),
        "type": "group",
        "enableWhen": [{"question": consent_given, "operator": "=", "answerBoolean": True}],
        "item": [
            {
                "extension": [
                    expression_ext(
                        SDC + "sdc-questionnaire-initialExpression",
                        "%gestation.entry.resource.valueQuantity.value",
                    ),
                    {"url": CORE + "questionnaire-unit", "valueCoding": coding(UCUM, "wk", "weeks")},
                ],
                "linkId": "gestational-age",
                "code": [coding(LOINC, "11884-4", "Gestational age Estimated")],
                **text(T("Gestational age (weeks), from the latest record; correct it if needed",
                         "Zwangerschapsduur (weken), uit de laatste registratie; pas aan indien nodig",
                         "Âge gestationnel (semaines), d'après le dernier enregistrement ; à corriger si nécessaire",
                         "Schwangerschaftsalter (Wochen), aus der letzten Erfassung; bei Bedarf korrigieren")),
                "type": "decimal",
            }
        ],
    }  # fmt: skip
    items: list[dict[str, Any]] = [consent, pregnancy]
    for code, threshold, questions in BIB_INDICATORS:
        names = INDICATOR_NAMES[code]
        children: list[dict[str, Any]] = []
        for index, (question, answers) in enumerate(questions, start=1):
            children.append(
                {
                    "linkId": f"{code}-{index}",
                    **text(question),
                    "type": "choice",
                    "required": True,
                    "answerOption": [
                        option(ANSWER_SYSTEM, f"{code}-{index}-{a}", label, weight)
                        for a, (label, weight) in enumerate(answers, start=1)
                    ],
                }
            )
        children.append(
            {
                "extension": [calculated("%score >= %threshold"), HIDDEN, EXTRACT],
                "linkId": f"{code}-flagged",
                "code": [coding(INDICATOR, code, names["en"])],
                **text(T(f"{names['en']}: indicator reached its threshold",
                         f"{names['nl-BE']}: drempel van de indicator bereikt",
                         f"{names['fr-BE']} : seuil de l'indicateur atteint",
                         f"{names['de']}: Schwelle des Indikators erreicht")),
                "type": "boolean",
                "readOnly": True,
                "item": [
                    {
                        "extension": [calculated("%score"), HIDDEN, SCORE_UNIT, COMPONENT],
                        "linkId": f"{code}-score",
                        "code": [coding(ELEMENT, "indicator-score", "Indicator score")],
                        **text(T(f"{names['en']}: score", f"{names['nl-BE']}: score",
                                 f"{names['fr-BE']} : score", f"{names['de']}: Punktwert")),
                        "type": "decimal",
                        "readOnly": True,
                    }
                ],
            }
        )  # fmt: skip
        items.append(
            {
                "extension": [
                    variable("score", "item." + WEIGHT_OF + SUM),
                    variable("threshold", str(threshold)),
                ],
                "linkId": code,
                "code": [coding(INDICATOR, code, names["en"])],
                **text(names),
                "type": "group",
                "enableWhen": [{"question": consent_given, "operator": "=", "answerBoolean": True}],
                "item": children,
            }
        )
    high_risk = " | ".join(f"'{c}-flagged'" for c in HIGH_RISK)
    items.append(
        {
            "linkId": "summary",
            "code": [coding(ELEMENT, "summary", "Screening summary")],
            **text(T("Summary (computed by the server)", "Samenvatting (berekend door de server)",
                     "Synthèse (calculée par le serveur)", "Zusammenfassung (vom Server berechnet)")),
            "type": "group",
            "enableWhen": [{"question": consent_given, "operator": "=", "answerBoolean": True}],
            "item": [
                {
                    "extension": [
                        calculated("%flagged.where($this.endsWith('-flagged')).count()"),
                        HIDDEN,
                    ],
                    "linkId": "risk-factor-count",
                    "code": [coding(ELEMENT, "risk-factor-count", "Number of risk factors")],
                    **text(T("Number of indicators that reached their threshold",
                             "Aantal indicatoren boven hun drempel",
                             "Nombre d'indicateurs ayant atteint leur seuil",
                             "Anzahl der Indikatoren über ihrer Schwelle")),
                    "type": "integer",
                    "readOnly": True,
                },
                {
                    "extension": [
                        calculated(f"({high_risk}).intersect(%flagged).exists()"),
                        HIDDEN,
                    ],
                    "linkId": "high-risk-factor",
                    "code": [coding(ELEMENT, "high-risk-factor", "High-risk factor present")],
                    **text(T("A high-risk indicator (depression, anxiety, violence, substance use) "
                             "reached its threshold",
                             "Een hoogrisico-indicator (depressie, angst, geweld, middelengebruik) "
                             "bereikte zijn drempel",
                             "Un indicateur à haut risque (dépression, anxiété, violence, "
                             "consommation) a atteint son seuil",
                             "Ein Hochrisiko-Indikator (Depression, Angst, Gewalt, Substanzkonsum) "
                             "hat seine Schwelle erreicht")),
                    "type": "boolean",
                    "readOnly": True,
                },
            ],
        }
    )  # fmt: skip
    title = T(
        "BiB psychosocial screening (placeholder question set)",
        "BiB psychosociale screening (voorlopige vragenset)",
        "Dépistage psychosocial BiB (jeu de questions provisoire)",
        "Psychosoziales BiB-Screening (vorläufiger Fragensatz)",
    )
    return questionnaire(
        "bib-psychosocial-screening", "BibPsychosocialScreening", title, "bib-pro-psychosocial",
        "REPLACEABLE PLACEHOLDER: a question set written for the BiB FHIR server, NOT the "
        "programme's official 21 questions (which are not public). It has the structure of the "
        "BiB tool: the woman's consent first, then one group per vulnerability indicator (13), "
        "answer options weighted 0.5 to 4 (itemWeight), a threshold per indicator (variable "
        "'threshold'), the indicator's score and whether it is flagged, computed by the server. "
        "The programme drops in its own questions, weights and thresholds as a new version of "
        "this canonical URL, without any code change.",
        "Placeholder questions written for the BiB FHIR server. The structure (13 indicators, "
        "weighted answer options, a threshold per indicator) follows Amuli K, Decabooter K, "
        "Talrich F, Renders A, Beeckman K. Born in Brussels screening tool: the development of "
        "a screening tool measuring antenatal psychosocial vulnerability. BMC Public Health "
        "2021;21:1522 (CC BY 4.0)." + WORKING,
        items,
        experimental=True,
        extensions=[
            # the linkIds of the yes-answers at the second level: the flagged indicators (and
            # the consent), computed once for both summary items
            variable("flagged", "%resource.item.item.where(answer.valueBoolean = true).linkId"),
            # $populate: the latest gestational age recorded for the woman, searched with the
            # caller's rights (the first contact is due at the latest at 16 weeks)
            expression_ext(
                CORE + "variable",
                "Observation?subject={{%patient.id}}&code=http://loinc.org|11884-4"
                "&_sort=-date&_count=1",
                name="gestation",
                language="application/x-fhir-query",
            ),
        ],
        purpose="Psychosocial assessment at the first perinatal contact (at the latest 16 weeks "
        "of pregnancy), the first step of the stepped protocol.",
    )  # fmt: skip


def _consent_values() -> list[dict[str, Any]]:
    def value(path: str, **kind: Any) -> dict[str, Any]:
        sub = (
            {"url": "expression", "valueExpression": {"language": "text/fhirpath",
                                                      "expression": kind["expression"]}}
            if "expression" in kind
            else {"url": "fixed-value", **kind["fixed"]}
        )  # fmt: skip
        return {
            "url": SDC + "sdc-questionnaire-definitionExtractValue",
            "extension": [{"url": "definition", "valueUri": CORE + "Consent#" + path}, sub],
        }

    return [
        value("Consent.status", expression="iif(item.where(linkId='consent-given')"
              ".answer.valueBoolean contains true, 'active', 'rejected')"),
        value("Consent.scope", fixed={"valueCodeableConcept": {"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/consentscope", "treatment", "Treatment")]}}),
        value("Consent.category", fixed={"valueCodeableConcept": {"coding": [coding(
            LOINC, "59284-0", "Patient Consent")]}}),
        value("Consent.patient", expression="%resource.subject"),
        value("Consent.performer", expression="%resource.subject"),
        value("Consent.dateTime", expression="%resource.authored"),
        value("Consent.policyRule", fixed={"valueCodeableConcept": {"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN", "opt-in")]},
            }),
        value("Consent.sourceReference.reference",
              expression="'QuestionnaireResponse/' + %resource.id"),
        value("Consent.provision.type", fixed={"valueCode": "permit"}),
        value("Consent.provision.purpose", fixed={"valueCoding": coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT", "treatment")}),
    ]  # fmt: skip


def bib_answers() -> list[dict[str, Any]]:
    out = []
    for code, _threshold, questions in BIB_INDICATORS:
        for index, (question, answers) in enumerate(questions, start=1):
            for a, (label, weight) in enumerate(answers, start=1):
                for lang in ("nl-BE", "fr-BE"):
                    if label[lang].casefold() == label["en"].casefold():
                        raise SystemExit(f"{code}-{index}-{a}: {lang} equals English")
                out.append(
                    concept(
                        f"{code}-{index}-{a}",
                        label,
                        f"Answer {a} to the placeholder question {index} of indicator {code} "
                        f"({question['en']}); weight {weight} in version {VERSION} of the BiB "
                        "screening (the weight is on the Questionnaire, not here).",
                    )
                )
    return out


# -- the stepped protocol (standards.md 1.3, Van Damme et al. 2021) --------------------------------


def _questionnaire_url(id_: str) -> str:
    return f"{BIB}/Questionnaire/{id_}"


def _trigger(questionnaire_id: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "data-added",
            "data": [
                {
                    "type": "QuestionnaireResponse",
                    "codeFilter": [
                        {
                            "path": "questionnaire",
                            "code": [
                                {
                                    "system": "urn:ietf:rfc:3986",
                                    "code": _questionnaire_url(questionnaire_id),
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    ]


def _condition(expression: str) -> list[dict[str, Any]]:
    return [
        {
            "kind": "applicability",
            "expression": {"language": "text/fhirpath", "expression": expression},
        }
    ]


def _days(n: int) -> dict[str, Any]:
    return {"value": n, "unit": "days", "system": UCUM, "code": "d"}


def _step(code: str) -> list[dict[str, Any]]:
    names = {c: n for c, n, _d in STEPS}[code]
    return [{"coding": [coding(STEP, code, names["en"])]}]


def _reason(indicator: str) -> list[dict[str, Any]]:
    return [{"coding": [coding(INDICATOR, indicator, INDICATOR_NAMES[indicator]["en"])]}]


def _action(id_: str, title: dict[str, str], **rest: Any) -> dict[str, Any]:
    return {"id": id_, "title": title["en"], "_title": translations(title), **rest}


def _screen(
    id_: str, questionnaire_id: str, title: dict[str, str], step: str = "screening"
) -> dict[str, Any]:
    return _action(
        id_, title, code=_step(step), definitionCanonical=_questionnaire_url(questionnaire_id)
    )


def _total(questionnaire_id: str, link_id: str) -> str:
    return f"%resource.item.where(linkId='{link_id}').answer.valueInteger"


WHOOLEY_T = T("Whooley questions", "Whooley-vragen", "Questions de Whooley", "Whooley-Fragen")
GAD2_T = T("GAD-2", "GAD-2-vragenlijst", "Questionnaire GAD-2", "GAD-2-Fragebogen")
EPDS_T = T("EPDS", "EPDS-vragenlijst", "Questionnaire EPDS", "EPDS-Fragebogen")
GAD7_T = T("GAD-7", "GAD-7-vragenlijst", "Questionnaire GAD-7", "GAD-7-Fragebogen")


def protocol() -> dict[str, Any]:
    summary = "%resource.item.where(linkId='summary').item"
    epds = _total("epds", "epds-total")
    gad7 = _total("gad-7", "gad-7-total")
    actions = [
        _action(
            "first-contact",
            T("Psychosocial assessment at the first perinatal contact (at the latest 16 weeks)",
              "Psychosociaal assessment bij het eerste perinatale contact (ten laatste 16 weken)",
              "Évaluation psychosociale au premier contact périnatal (au plus tard à 16 semaines)",
              "Psychosoziales Assessment beim ersten perinatalen Kontakt (spätestens 16 Wochen)"),
            description="Entry step: the BiB screening at the first perinatal contact, at the latest "
            "at 16 weeks of pregnancy. Not triggered by the server: it starts the protocol.",
            code=_step("screening"),
            definitionCanonical=_questionnaire_url("bib-psychosocial-screening"),
        ),
        _action(
            "risk-factors",
            T("More than 2 risk factors or 1 high-risk factor: Whooley questions and GAD-2",
              "Meer dan 2 risicofactoren of 1 hoogrisicofactor: Whooley-vragen en GAD-2",
              "Plus de 2 facteurs de risque ou 1 facteur à haut risque : questions de Whooley et GAD-2",
              "Mehr als 2 Risikofaktoren oder 1 Hochrisikofaktor: Whooley-Fragen und GAD-2"),
            trigger=_trigger("bib-psychosocial-screening"),
            description="The summary group holds two computed answers: the number of flagged "
            "indicators (integer) and whether a high-risk one is flagged (boolean); the "
            "condition reads both in one pass.",
            condition=_condition(
                f"{summary}.answer.where(valueInteger > 2 or valueBoolean = true).exists()"
            ),
            reason=_reason("depression"),
            priority="routine",
            timingDuration=_days(7),
            action=[
                _screen("whooley", "whooley", WHOOLEY_T),
                _screen("gad-2", "gad-2", GAD2_T),
            ],
        ),
        _action(
            "whooley-positive",
            T("Whooley positive (yes to either question): EPDS and GAD-7",
              "Whooley positief (ja op een van beide vragen): EPDS en GAD-7",
              "Whooley positif (oui à l'une des questions) : EPDS et GAD-7",
              "Whooley positiv (Ja auf eine der Fragen): EPDS und GAD-7"),
            trigger=_trigger("whooley"),
            condition=_condition(
                "%resource.item.where(linkId='whooley-positive').answer.valueBoolean contains true"
            ),
            reason=_reason("depression"),
            priority="routine",
            timingDuration=_days(7),
            action=[
                _screen("whooley-positive-epds", "epds", EPDS_T),
                _screen("whooley-positive-gad-7", "gad-7", GAD7_T),
            ],
        ),
        _action(
            "gad-2-positive",
            T("GAD-2 total of 3 or more: EPDS and GAD-7",
              "GAD-2 totaal 3 of meer: EPDS en GAD-7",
              "Total GAD-2 de 3 ou plus : EPDS et GAD-7",
              "GAD-2-Gesamtwert 3 oder mehr: EPDS und GAD-7"),
            trigger=_trigger("gad-2"),
            condition=_condition(f"{_total('gad-2', 'gad-2-total')} >= 3"),
            reason=_reason("anxiety"),
            priority="routine",
            timingDuration=_days(7),
            action=[
                _screen("gad-2-positive-epds", "epds", EPDS_T),
                _screen("gad-2-positive-gad-7", "gad-7", GAD7_T),
            ],
        ),
        _action(
            "epds-rescreen",
            T("EPDS above 10 (up to 13): plan a re-screening",
              "EPDS boven 10 (tot 13): plan een herscreening",
              "EPDS au-dessus de 10 (jusqu'à 13) : planifier un nouveau dépistage",
              "EPDS über 10 (bis 13): erneutes Screening planen"),
            trigger=_trigger("epds"),
            condition=_condition(f"{epds} > 10 and {epds} <= 13"),
            reason=_reason("depression"),
            priority="routine",
            timingDuration=_days(14),
            action=[_screen("epds-again", "epds", EPDS_T, "rescreening")],
        ),
        _action(
            "epds-assessment",
            T("EPDS above 13: plan a clinical assessment",
              "EPDS boven 13: plan een klinisch assessment",
              "EPDS au-dessus de 13 : planifier une évaluation clinique",
              "EPDS über 13: klinische Abklärung planen"),
            trigger=_trigger("epds"),
            condition=_condition(f"{epds} > 13"),
            code=_step("clinical-assessment"),
            reason=_reason("depression"),
            priority="urgent",
            timingDuration=_days(7),
        ),
        _action(
            "gad-7-rescreen",
            T("GAD-7 above 10 (up to 15): plan a re-screening",
              "GAD-7 boven 10 (tot 15): plan een herscreening",
              "GAD-7 au-dessus de 10 (jusqu'à 15) : planifier un nouveau dépistage",
              "GAD-7 über 10 (bis 15): erneutes Screening planen"),
            trigger=_trigger("gad-7"),
            condition=_condition(f"{gad7} > 10 and {gad7} <= 15"),
            reason=_reason("anxiety"),
            priority="routine",
            timingDuration=_days(14),
            action=[_screen("gad-7-again", "gad-7", GAD7_T, "rescreening")],
        ),
        _action(
            "gad-7-assessment",
            T("GAD-7 above 15: plan a clinical assessment",
              "GAD-7 boven 15: plan een klinisch assessment",
              "GAD-7 au-dessus de 15 : planifier une évaluation clinique",
              "GAD-7 über 15: klinische Abklärung planen"),
            trigger=_trigger("gad-7"),
            condition=_condition(f"{gad7} > 15"),
            code=_step("clinical-assessment"),
            reason=_reason("anxiety"),
            priority="urgent",
            timingDuration=_days(7),
        ),
    ]  # fmt: skip
    return {
        "resourceType": "PlanDefinition",
        "id": "bib-stepped-screening",
        "language": "en",
        "url": f"{BIB}/PlanDefinition/bib-stepped-screening",
        "version": VERSION,
        "name": "BibSteppedScreening",
        "title": "Stepped screening for perinatal anxiety and depression (Flemish protocol)",
        "type": {
            "coding": [
                coding("http://terminology.hl7.org/CodeSystem/plan-definition-type",
                       "clinical-protocol", "Clinical Protocol")
            ]
        },
        "status": "active",
        "experimental": False,
        "date": DATE,
        "publisher": PUBLISHER,
        "contact": CONTACT,
        "description": (
            "The stepped protocol of the Flemish guideline for the screening and detection of "
            "perinatal depressive and anxiety disorders (Van Damme, Van Parys, Vogels, Roelens, "
            "Lemmens; UZ Gent 2021), as data the server evaluates on every completed screening "
            "response (docs/screening.md): first contact -> BiB screening; more than 2 risk "
            "factors or 1 high-risk factor -> Whooley + GAD-2; Whooley positive or GAD-2 >= 3 -> "
            "EPDS + GAD-7; EPDS or GAD-7 above 10 -> re-screening; EPDS above 13 or GAD-7 above "
            "15 -> clinical assessment. Each step becomes a Task for the responsible "
            "professional. Thresholds, delays and steps can be changed here without code."
        ),
        "jurisdiction": JURISDICTION,
        "relatedArtifact": [
            {
                "type": "documentation",
                "display": "Leidraad voor de screening en detectie van perinatale depressieve en "
                "angststoornissen (UZ Gent, 2021)",
                "url": "https://moederbaby.be/leidraad-screening-en-detectie-psychische-problemen-tijdens-de-perinatale-periode",
            }
        ],
        "action": actions,
    }  # fmt: skip


# -- OperationDefinitions ---------------------------------------------------------------------------


def _parameter(name: str, use: str, low: int, high: str, type_: str | None, doc: str,
               **rest: Any) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"name": name, "use": use, "min": low, "max": high, "documentation": doc}
    if type_:
        out["type"] = type_
    out.update(rest)
    return out


def operation_definitions() -> list[dict[str, Any]]:
    common = {
        "resourceType": "OperationDefinition",
        "version": VERSION,
        "status": "active",
        "kind": "operation",
        "date": DATE,
        "publisher": PUBLISHER,
        "contact": CONTACT,
        "affectsState": False,
        "system": False,
        "type": True,
        "instance": True,
    }
    populate = {
        **common,
        "id": "bib-questionnaire-populate",
        "url": f"{BIB}/OperationDefinition/bib-questionnaire-populate",
        "name": "BibQuestionnairePopulate",
        "title": "Populate Questionnaire (BiB server)",
        "description": (
            "SDC $populate as this server implements it: expression-based population (launch "
            "contexts patient, user, encounter; FHIRPath and x-fhir-query variables; "
            "initialExpression; itemPopulationContext; initial values), every read and search "
            "with the caller's permissions. Returns an in-progress QuestionnaireResponse and "
            "the issues met. Not supported: identifier, dataEndpoint, data."
        ),
        "code": "populate",
        "base": "http://hl7.org/fhir/uv/sdc/OperationDefinition/Questionnaire-populate",
        "resource": ["Questionnaire"],
        "parameter": [
            _parameter("questionnaire", "in", 0, "1", "Element",
                       "The Questionnaire (canonical URL, Reference or the resource itself), at "
                       "type level; ignored at instance level."),
            _parameter("subject", "in", 1, "1", "Reference",
                       "The subject of the response (e.g. Patient/123); the caller must be "
                       "allowed to read it."),
            _parameter("context", "in", 0, "*", None,
                       "A launch context or root x-fhir-query variable given by the caller.",
                       part=[
                           _parameter("name", "in", 1, "1", "string",
                                      "The launchContext or variable name."),
                           _parameter("content", "in", 1, "*", "Element",
                                      "A Reference the server reads (with the caller's "
                                      "permissions) or a resource given inline."),
                       ]),
            _parameter("local", "in", 0, "1", "boolean",
                       "Accepted; the server always uses what it holds."),
            _parameter("response", "out", 1, "1", "QuestionnaireResponse",
                       "The in-progress response, pre-filled where the Questionnaire says how."),
            _parameter("issues", "out", 0, "1", "OperationOutcome",
                       "Warnings about expressions or queries that could not be used."),
        ],
    }  # fmt: skip
    extract = {
        **common,
        "id": "bib-questionnaireresponse-extract",
        "url": f"{BIB}/OperationDefinition/bib-questionnaireresponse-extract",
        "name": "BibQuestionnaireResponseExtract",
        "title": "Extract resources from a QuestionnaireResponse (BiB server)",
        "description": (
            "SDC $extract as this server implements it: observation-based extraction "
            "(observationExtract, with component / member / derived relationships, "
            "observation-extract-category, questionnaire-unit) and definition-based extraction "
            "(definitionExtract or the deprecated itemExtractionContext, item.definition, "
            "definitionExtractValue, extractAllocateId). The response is validated and, when "
            "completed, scored first. Returns a transaction Bundle (nothing is stored); with "
            "issues, a Parameters with return and issues. A Questionnaire can ask the server to "
            "extract on completion (BiB extension questionnaire-extract-on-complete)."
        ),
        "code": "extract",
        "base": "http://hl7.org/fhir/uv/sdc/OperationDefinition/QuestionnaireResponse-extract",
        "resource": ["QuestionnaireResponse"],
        "parameter": [
            _parameter("questionnaire-response", "in", 0, "1", "QuestionnaireResponse",
                       "The response to extract from (type level)."),
            _parameter("questionnaire", "in", 0, "1", "Questionnaire",
                       "The Questionnaire, if the server does not hold it."),
            _parameter("return", "out", 0, "1", "Resource",
                       "The transaction Bundle of the extracted resources."),
            _parameter("issues", "out", 0, "1", "OperationOutcome",
                       "Warnings and information about the extraction."),
        ],
    }  # fmt: skip
    return [populate, extract]


def main() -> None:
    write_terminology()
    answers = code_system(
        "bib-screening-answer",
        "BiBScreeningAnswer",
        "BiB screening answer options",
        "The answer options of the placeholder question set of the BiB psychosocial screening "
        "(content/screening), one code per question and option. A programme version with its "
        "own questions brings its own answer codes.",
        bib_answers(),
    )
    write(TERMINOLOGY / "CodeSystem-bib-screening-answer.json", answers)
    write(TERMINOLOGY / "ValueSet-bib-screening-answer.json", value_set(answers))
    CONTENT.mkdir(parents=True, exist_ok=True)
    questionnaires = [
        bib_screening(),
        whooley(),
        gad("gad-2", "Gad2", T("Generalized Anxiety Disorder 2-item (GAD-2)",
                               "Gegeneraliseerde angststoornis, 2 vragen (GAD-2)",
                               "Trouble anxieux généralisé, 2 questions (GAD-2)",
                               "Generalisierte Angststörung, 2 Fragen (GAD-2)"),
            2, None, [coding(ELEMENT, "gad-2-total", "GAD-2 total score")]),
        gad("gad-7", "Gad7", T("Generalized Anxiety Disorder 7-item (GAD-7)",
                               "Gegeneraliseerde angststoornis, 7 vragen (GAD-7)",
                               "Trouble anxieux généralisé, 7 questions (GAD-7)",
                               "Generalisierte Angststörung, 7 Fragen (GAD-7)"),
            7, "69737-5", [coding(LOINC, "70274-6")]),
        phq("phq-2", "Phq2", T("Patient Health Questionnaire-2 (PHQ-2)",
                               "Patient Health Questionnaire-2 (PHQ-2), Nederlandse werkversie",
                               "Questionnaire sur la santé du patient-2 (PHQ-2)",
                               "Gesundheitsfragebogen für Patienten-2 (PHQ-2)"),
            2, "55757-9", "55758-7", alert=False),
        phq("phq-9", "Phq9", T("Patient Health Questionnaire-9 (PHQ-9)",
                               "Patient Health Questionnaire-9 (PHQ-9), Nederlandse werkversie",
                               "Questionnaire sur la santé du patient-9 (PHQ-9)",
                               "Gesundheitsfragebogen für Patienten-9 (PHQ-9)"),
            9, "44249-1", "44261-6", alert=True),
        epds(),
    ]  # fmt: skip
    for resource in questionnaires:
        write(CONTENT / f"Questionnaire-{resource['id']}.json", resource)
    write(
        ROOT / "fhir_server" / "demo" / "30-screening.json",
        demo(questionnaires[0], questionnaires[1]),
    )
    write(CONTENT / "PlanDefinition-bib-stepped-screening.json", protocol())
    for resource in operation_definitions():
        write(CONTENT / f"OperationDefinition-{resource['id']}.json", resource)


# -- demo ---------------------------------------------------------------------------------------


def _answer(questionnaire: dict[str, Any], link_id: str, points: float) -> dict[str, Any]:
    for item in _walk(questionnaire["item"]):
        if item["linkId"] == link_id:
            for opt in item["answerOption"]:
                weight = next(
                    e["valueDecimal"] for e in opt["extension"] if e["url"] == ITEM_WEIGHT
                )
                if weight == points:
                    coded = opt["valueCoding"]
                    return {
                        "linkId": link_id,
                        "answer": [
                            {"valueCoding": {"system": coded["system"], "code": coded["code"]}}
                        ],
                    }
    raise KeyError((link_id, points))


def _walk(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        out.append(item)
        out.extend(_walk(item.get("item", [])))
    return out


def demo(bib: dict[str, Any], whooley_: dict[str, Any]) -> dict[str, Any]:
    """fhir_server/demo/30-screening.json: a completed BiB screening and a Whooley for the demo
    patient, by the demo midwife. The two Questionnaires come along as conditional creates, so
    the demo also loads when the shipped content is not loaded (the shipped ones win)."""
    points = {
        "income": [1.5, 2],
        "housing": [2, 0],
        "social-support": [1.5, 0.5],
        "depression": [1, 1],
    }
    items: list[dict[str, Any]] = [
        {"linkId": "consent", "item": [
            {"linkId": "consent-informed", "answer": [{"valueBoolean": True}]},
            {"linkId": "consent-given", "answer": [{"valueBoolean": True}]},
        ]},
        {"linkId": "pregnancy", "item": [{"linkId": "gestational-age", "answer": [{"valueDecimal": 12}]}]},
    ]  # fmt: skip
    for code, _threshold, questions in BIB_INDICATORS:
        wanted = points.get(code, [0] * len(questions))
        items.append(
            {
                "linkId": code,
                "item": [_answer(bib, f"{code}-{i}", p) for i, p in enumerate(wanted, start=1)],
            }
        )

    def response(
        questionnaire: dict[str, Any], authored: str, answers: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}",
            "status": "completed",
            "subject": {"reference": "Patient/demo-patient-1"},
            "authored": authored,
            "author": {"reference": "Practitioner/demo-midwife"},
            "item": answers,
        }

    whooley_answers = [
        {"linkId": "whooley-1", "answer": [{"valueBoolean": True}]},
        {"linkId": "whooley-2", "answer": [{"valueBoolean": False}]},
    ]
    entries = []
    for questionnaire in (bib, whooley_):
        body = {k: v for k, v in questionnaire.items() if k != "id"}
        entries.append({
            "fullUrl": f"urn:uuid:6a1f4e2c-0b6d-4f4e-9c51-2f0c9d1a7a{len(entries):02d}",
            "resource": body,
            "request": {"method": "POST", "url": "Questionnaire",
                        "ifNoneExist": f"url={questionnaire['url']}&version={questionnaire['version']}"},
        })  # fmt: skip
    for index, resource in enumerate(
        (
            response(bib, "2026-10-02T10:30:00+02:00", items),
            response(whooley_, "2026-10-09T11:00:00+02:00", whooley_answers),
        )
    ):
        entries.append({
            "fullUrl": f"urn:uuid:6a1f4e2c-0b6d-4f4e-9c51-2f0c9d1a7b{index:02d}",
            "resource": resource,
            "request": {"method": "POST", "url": "QuestionnaireResponse"},
        })  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


if __name__ == "__main__":
    main()
