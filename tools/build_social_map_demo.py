# ruff: noqa: E501, E402  (a data table; the import follows the sys.path set-up)
"""Generate fhir_server/demo/30-social-map.json: a fictional social map of about 90 services in
the 19 Brussels municipalities (5 care zones) and two Flemish eerstelijnszones, nl + fr (some
en). Names are made up ("fictief" / "fictif"); places and NIS codes are real. Deterministic:
run it again and the file is the same. Uses the import's builder, so demo entries have exactly
the shape imported ones have."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.socialmap import model
from fhir_server.socialmap.importer.build import (
    Classification,
    Contact,
    Place,
    ServiceRecord,
    build,
)

BRUSSELS = {  # NIS: (fr, nl, zone, lat, lon, postal code)
    "21001": ("Anderlecht", "Anderlecht", "zorgzone-centrum-west", 50.8365, 4.3083, "1070"),
    "21002": ("Auderghem", "Oudergem", "zorgzone-zuid-oost", 50.8167, 4.4333, "1160"),
    "21003": (
        "Berchem-Sainte-Agathe",
        "Sint-Agatha-Berchem",
        "zorgzone-noord",
        50.8667,
        4.2917,
        "1082",
    ),
    "21004": ("Bruxelles", "Brussel", "zorgzone-centrum-west", 50.8467, 4.3525, "1000"),
    "21005": ("Etterbeek", "Etterbeek", "zorgzone-zuid-oost", 50.8333, 4.3833, "1040"),
    "21006": ("Evere", "Evere", "zorgzone-noord-oost", 50.8667, 4.4000, "1140"),
    "21007": ("Forest", "Vorst", "zorgzone-zuid", 50.8117, 4.3178, "1190"),
    "21008": ("Ganshoren", "Ganshoren", "zorgzone-noord", 50.8711, 4.3086, "1083"),
    "21009": ("Ixelles", "Elsene", "zorgzone-zuid", 50.8333, 4.3667, "1050"),
    "21010": ("Jette", "Jette", "zorgzone-noord", 50.8775, 4.3269, "1090"),
    "21011": ("Koekelberg", "Koekelberg", "zorgzone-noord", 50.8622, 4.3258, "1081"),
    "21012": (
        "Molenbeek-Saint-Jean",
        "Sint-Jans-Molenbeek",
        "zorgzone-centrum-west",
        50.8547,
        4.3225,
        "1080",
    ),
    "21013": ("Saint-Gilles", "Sint-Gillis", "zorgzone-zuid", 50.8275, 4.3458, "1060"),
    "21014": (
        "Saint-Josse-ten-Noode",
        "Sint-Joost-ten-Node",
        "zorgzone-noord-oost",
        50.8531,
        4.3736,
        "1210",
    ),
    "21015": ("Schaerbeek", "Schaarbeek", "zorgzone-noord-oost", 50.8676, 4.3737, "1030"),
    "21016": ("Uccle", "Ukkel", "zorgzone-zuid", 50.8000, 4.3333, "1180"),
    "21017": (
        "Watermael-Boitsfort",
        "Watermaal-Bosvoorde",
        "zorgzone-zuid",
        50.7992,
        4.4158,
        "1170",
    ),
    "21018": (
        "Woluwe-Saint-Lambert",
        "Sint-Lambrechts-Woluwe",
        "zorgzone-zuid-oost",
        50.8470,
        4.4290,
        "1200",
    ),
    "21019": (
        "Woluwe-Saint-Pierre",
        "Sint-Pieters-Woluwe",
        "zorgzone-zuid-oost",
        50.8300,
        4.4400,
        "1150",
    ),
}
FLANDERS = {  # NIS: (nl, fr, zone, lat, lon, postal code)
    "24062": ("Leuven", "Louvain", "elz-leuven", 50.8798, 4.7005, "3000"),
    "24009": ("Bertem", "Bertem", "elz-leuven", 50.8656, 4.6283, "3060"),
    "24038": ("Herent", "Herent", "elz-leuven", 50.9061, 4.6706, "3020"),
    "24055": ("Kortenberg", "Kortenberg", "elz-leuven", 50.8833, 4.5333, "3070"),
    "24086": ("Oud-Heverlee", "Oud-Heverlee", "elz-leuven", 50.8333, 4.6667, "3050"),
    "12025": ("Mechelen", "Malines", "elz-mechelen-katelijne", 51.0259, 4.4776, "2800"),
    "12035": (
        "Sint-Katelijne-Waver",
        "Wavre-Sainte-Catherine",
        "elz-mechelen-katelijne",
        51.0667,
        4.5333,
        "2860",
    ),
    "12005": ("Bonheiden", "Bonheiden", "elz-mechelen-katelijne", 51.0228, 4.5414, "2820"),
}
ZONE_NAMES = {
    "zorgzone-noord": ("Nord", "Noord"),
    "zorgzone-noord-oost": ("Nord-Est", "Noord-Oost"),
    "zorgzone-centrum-west": ("Centre-Ouest", "Centrum-West"),
    "zorgzone-zuid": ("Sud", "Zuid"),
    "zorgzone-zuid-oost": ("Sud-Est", "Zuid-Oost"),
    "elz-leuven": ("Louvain", "Leuven"),
    "elz-mechelen-katelijne": ("Malines-Katelijne", "Mechelen-Katelijne"),
}
FIRST = [
    "An",
    "Sarah",
    "Youssef",
    "Marie",
    "Lotte",
    "Fatima",
    "Tom",
    "Claire",
    "Ahmed",
    "Els",
    "Nadia",
    "Pieter",
    "Inès",
    "Karim",
    "Sofie",
    "Julie",
    "Mehmet",
    "Hanne",
    "Aïcha",
    "Bram",
]
LAST = [
    "Peeters",
    "Dubois",
    "El Amrani",
    "Janssens",
    "Lambert",
    "Maes",
    "Benali",
    "Claes",
    "Dumont",
    "Willems",
    "Yilmaz",
    "Leclercq",
    "Vermeulen",
    "Diallo",
    "Goossens",
    "Mertens",
]

# kind: (names {fr, nl, en?}, descriptions {fr, nl, en?}, classification, extras)
KINDS = {
    "cpas": (
        {"fr": "CPAS de {fr} - service social", "nl": "OCMW {nl} - sociale dienst"},
        {
            "fr": "Aide sociale et financière, revenu d'intégration, accompagnement des futures mères en situation précaire.",
            "nl": "Sociale en financiële hulp, leefloon en begeleiding van aanstaande moeders in een precaire situatie.",
        },
        Classification(
            {},
            "line-1",
            ["socially-vulnerable", "undocumented"],
            ["ambulatory", "home-visit"],
            cost="free",
        ),
        {
            "referral": "self-referral",
            "waitingWeeks": 1,
            "priorityPregnant": True,
            "periods": ["pregnancy-t1", "pregnancy-t2", "pregnancy-t3", "postpartum-0-6w"],
        },
    ),
    "one": (
        {
            "fr": "Consultation pour enfants Petits Pas {fr} (fictif)",
            "nl": "Consultatiebureau Kleine Stapjes {nl} (fictief)",
        },
        {
            "fr": "Suivi préventif gratuit de la santé et du développement des enfants de 0 à 6 ans, vaccinations, conseils d'allaitement.",
            "nl": "Gratis preventieve opvolging van gezondheid en ontwikkeling van kinderen van 0 tot 6 jaar, vaccinaties, advies over borstvoeding.",
        },
        Classification({}, "line-1", [], ["ambulatory", "home-visit"], cost="free"),
        {
            "referral": "self-referral",
            "waitingWeeks": 0,
            "periods": ["postpartum-0-6w", "postpartum-6w-1y", "child-1-2y"],
        },
    ),
    "loss-group": (
        {
            "fr": "Groupe de parole deuil périnatal - zone {zfr} (fictif)",
            "nl": "Praatgroep perinataal rouwen - zone {znl} (fictief)",
        },
        {
            "fr": "Groupe mensuel pour parents après une fausse couche, une mort in utero ou le décès de leur bébé. Accueil bienveillant, entre parents.",
            "nl": "Maandelijkse groep voor ouders na een miskraam, vruchtdood of het overlijden van hun baby. Warm onthaal, tussen lotgenoten.",
        },
        Classification(
            {}, "line-0", ["pregnancy-or-infant-loss", "previous-loss"], ["group"], cost="free"
        ),
        {"referral": "self-referral", "waitingWeeks": 0},
    ),
    "grief": (
        {
            "fr": "Accompagnement individuel du deuil périnatal - {zfr} (fictif)",
            "nl": "Individuele rouwbegeleiding na zwangerschapsverlies - {znl} (fictief)",
        },
        {
            "fr": "Entretiens individuels et de couple avec une psychologue spécialisée en deuil périnatal, aussi pour les frères et sœurs.",
            "nl": "Individuele gesprekken en koppelgesprekken met een psychologe gespecialiseerd in perinataal rouwen, ook voor broers en zussen.",
        },
        Classification(
            {},
            "line-1",
            ["pregnancy-or-infant-loss", "congenital-anomaly"],
            ["ambulatory", "home-visit"],
            cost="reimbursed",
        ),
        {"referral": "self-referral", "waitingWeeks": 2, "priorityPregnant": True, "sessions": 8},
    ),
    "elp": (
        {
            "fr": "Psychologue de première ligne périnatal - {zfr} (fictif)",
            "nl": "Perinatale eerstelijnspsycholoog - {znl} (fictief)",
        },
        {
            "fr": "Soutien psychologique de courte durée pendant la grossesse et après la naissance : anxiété, dépression, stress. Séances remboursées.",
            "nl": "Kortdurende psychologische ondersteuning tijdens de zwangerschap en na de bevalling: angst, depressie, stress. Terugbetaalde sessies.",
        },
        Classification({}, "line-1", [], ["ambulatory", "online"], cost="reimbursed"),
        {
            "referral": "professional-referral",
            "waitingWeeks": 3,
            "priorityPregnant": True,
            "sessions": 8,
            "periods": [
                "pregnancy-t1",
                "pregnancy-t2",
                "pregnancy-t3",
                "postpartum-0-6w",
                "postpartum-6w-1y",
            ],
        },
    ),
    "lactation": (
        {
            "fr": "Consultante en lactation et groupe de parents - {zfr} (fictif)",
            "nl": "Lactatiekundige en oudergroep - {znl} (fictief)",
            "en": "Lactation consultant and parent group - {zen} (fictitious)",
        },
        {
            "fr": "Visites à domicile d'une consultante en lactation IBCLC et groupe de parents mensuel (Centering Parenting).",
            "nl": "Huisbezoeken door een IBCLC-lactatiekundige en maandelijkse oudergroep (Centering Parenting).",
            "en": "Home visits by an IBCLC lactation consultant and a monthly parent group (Centering Parenting).",
        },
        Classification({}, "line-1", [], ["home-visit", "group"], cost="paying"),
        {
            "referral": "self-referral",
            "waitingWeeks": 1,
            "periods": ["postpartum-0-6w", "postpartum-6w-1y"],
        },
    ),
    "kraamzorg": (
        {
            "fr": "Aide à la maternité à domicile - {zfr} (fictif)",
            "nl": "Kraamzorg aan huis - {znl} (fictief)",
        },
        {
            "fr": "Une aide à la maternité vient à domicile les premières semaines après la naissance : soins à la mère et au bébé, aide ménagère.",
            "nl": "Een kraamverzorgende komt aan huis in de eerste weken na de geboorte: zorg voor moeder en baby, hulp in het huishouden.",
        },
        Classification({}, "line-1", [], ["home-visit"], cost="income-related"),
        {
            "referral": "self-referral",
            "waitingWeeks": 4,
            "priorityPregnant": True,
            "periods": ["pregnancy-t3", "postpartum-0-6w"],
        },
    ),
    "interpreter": (
        {
            "fr": "Interprétariat social - {zfr} (fictif)",
            "nl": "Sociaal tolken - {znl} (fictief)",
            "en": "Community interpreting - {zen} (fictitious)",
        },
        {
            "fr": "Interprètes en arabe, turc, dari, tigrinya et roumain, par téléphone ou sur place, pour les consultations prénatales et sociales.",
            "nl": "Tolken Arabisch, Turks, Dari, Tigrinya en Roemeens, telefonisch of ter plaatse, voor prenatale en sociale consultaties.",
            "en": "Interpreters in Arabic, Turkish, Dari, Tigrinya and Romanian, by phone or on site, for prenatal and social consultations.",
        },
        Classification({}, "line-0", ["language-barrier"], ["telephone", "outreach"], cost="free"),
        {
            "referral": "professional-referral",
            "waitingWeeks": 0,
            "languages": ["ar", "tr", "prs", "ti", "ro"],
        },
    ),
}
REGIONAL = [
    (
        "Boven de Regenboog vzw (fictieve tweeling van Boven de Wolken)",
        "Au-delà de l'Arc-en-ciel asbl (jumeau fictif de Boven de Wolken)",
        "Steun, lotgenotencontact en herinneringsmomenten voor ouders van een sterrenkindje; koesterkoffers en troostdoosjes voor materniteiten.",
        "Soutien, rencontres entre parents et moments de souvenir pour les parents d'un enfant étoile ; coffrets souvenirs pour les maternités.",
        Classification(
            {},
            "line-0",
            ["pregnancy-or-infant-loss", "previous-loss"],
            ["group", "telephone"],
            cost="free",
        ),
        "21004",
        None,
    ),
    (
        "Berenfonds vzw (fictieve tweeling van Berrefonds)",
        "Fonds des Oursons asbl (jumeau fictif de Berrefonds)",
        "Rouwondersteuning voor gezinnen na het overlijden van een baby: rouwbegeleiding, lotgenotengroepen en een telefonische hulplijn.",
        "Soutien au deuil pour les familles après le décès d'un bébé : accompagnement, groupes de parole et ligne d'écoute téléphonique.",
        Classification(
            {},
            "line-0",
            ["pregnancy-or-infant-loss"],
            ["group", "telephone", "online"],
            cost="free",
        ),
        "24062",
        None,
    ),
    (
        "Moeder-baby-eenheid Brussel (fictief)",
        "Unité mère-bébé Bruxelles (fictive)",
        "Residentiële opname van moeder en baby samen bij ernstige perinatale psychiatrische problemen, postpartumpsychose.",
        "Hospitalisation conjointe mère-bébé en cas de troubles psychiatriques périnatals sévères, psychose post-partum.",
        Classification(
            {},
            "line-3",
            ["severe-psychiatric-disorder"],
            ["residential"],
            module="residential-mbu",
            cost="reimbursed",
        ),
        "21004",
        "physician-referral",
    ),
    (
        "Perinataal mobiel team Brussel (fictief)",
        "Équipe mobile périnatale Bruxelles (fictive)",
        "Thuisbehandeling door een perinataal team (vroedvrouw, psychiater, psycholoog) om opname te vermijden.",
        "Traitement à domicile par une équipe périnatale (sage-femme, psychiatre, psychologue) pour éviter une hospitalisation.",
        Classification(
            {},
            "line-3",
            ["severe-psychiatric-disorder"],
            ["home-visit", "outreach"],
            module="outreach-home-treatment",
            cost="reimbursed",
        ),
        "21009",
        "physician-referral",
    ),
    (
        "CGG Moeder & Baby-werking Brussel (fictief)",
        "Centre de santé mentale - espace mère-bébé Bruxelles (fictif)",
        "Ambulante behandeling voor ouders met angst, depressie of hechtingsproblemen tijdens de zwangerschap en het eerste levensjaar.",
        "Traitement ambulatoire pour parents souffrant d'anxiété, de dépression ou de difficultés d'attachement pendant la grossesse et la première année.",
        Classification(
            {},
            "line-2",
            [],
            ["ambulatory", "home-visit"],
            module="outpatient",
            cost="income-related",
        ),
        "21015",
        "professional-referral",
    ),
    (
        "CGG perinatale module Leuven (fictief)",
        "Centre de santé mentale module périnatal Louvain (fictif)",
        "Perinatale geestelijke gezondheidszorg: psychotherapie, ouder-baby-behandeling, consult voor huisartsen en vroedvrouwen.",
        "Santé mentale périnatale : psychothérapie, traitement parent-bébé, avis pour médecins généralistes et sages-femmes.",
        Classification(
            {}, "line-2", [], ["ambulatory"], module="outpatient", cost="income-related"
        ),
        "24062",
        "professional-referral",
    ),
    (
        "Perinatale crisislijn 24/7 (fictief)",
        "Ligne de crise périnatale 24h/24 (fictive)",
        "Dag en nacht bereikbaar bij acute psychische nood tijdens de zwangerschap of na de bevalling; mobiel crisisteam.",
        "Joignable jour et nuit en cas de détresse psychique aiguë pendant la grossesse ou après l'accouchement ; équipe mobile de crise.",
        Classification(
            {},
            "line-2",
            ["severe-psychiatric-disorder"],
            ["telephone", "outreach"],
            module="outreach-home-treatment",
            cost="free",
        ),
        "21004",
        "self-referral",
    ),
    (
        "Drughulp Zwanger (fictief)",
        "Assuétudes et grossesse (fictif)",
        "Verslavingszorg met perinatale expertise: snelle opstart, vroege aanmelding op de wachtlijst, begeleiding tot twee jaar na de geboorte.",
        "Soins des assuétudes avec expertise périnatale : démarrage rapide, inscription précoce, accompagnement jusqu'aux deux ans de l'enfant.",
        Classification(
            {}, "line-2", ["substance-use"], ["ambulatory", "outreach"], cost="reimbursed"
        ),
        "21001",
        "self-referral",
    ),
    (
        "Verslavingszorg moeder en kind Mechelen (fictief)",
        "Assuétudes mère-enfant Malines (fictif)",
        "Ambulante begeleiding van zwangere vrouwen en jonge ouders met middelengebruik, in samenwerking met Kind en Gezin.",
        "Accompagnement ambulatoire des femmes enceintes et jeunes parents usagers de drogues, en collaboration avec Kind en Gezin.",
        Classification(
            {}, "line-2", ["substance-use"], ["ambulatory", "home-visit"], cost="reimbursed"
        ),
        "12025",
        "self-referral",
    ),
    (
        "Zorg zonder papieren Brussel (fictief)",
        "Soins sans papiers Bruxelles (fictif)",
        "Medische en sociale begeleiding voor zwangere vrouwen zonder verblijfsvergunning: dringende medische hulp, prenatale zorg.",
        "Accompagnement médical et social des femmes enceintes sans titre de séjour : aide médicale urgente, suivi prénatal.",
        Classification(
            {},
            "line-1",
            ["undocumented", "language-barrier"],
            ["ambulatory", "outreach"],
            cost="free",
        ),
        "21014",
        "self-referral",
    ),
    (
        "Centrum Algemeen Welzijnswerk Leuven (fictief)",
        "Centre d'action sociale Louvain (fictif)",
        "Onthaal, begeleiding en doorverwijzing bij problemen rond wonen, geld, relaties en geweld.",
        "Accueil, accompagnement et orientation en cas de problèmes de logement, d'argent, de relations et de violence.",
        Classification({}, "line-1", ["socially-vulnerable"], ["ambulatory"], cost="free"),
        "24062",
        "self-referral",
    ),
    (
        "Centrum Algemeen Welzijnswerk Mechelen (fictief)",
        "Centre d'action sociale Malines (fictif)",
        "Onthaal, begeleiding en doorverwijzing bij problemen rond wonen, geld, relaties en geweld.",
        "Accueil, accompagnement et orientation en cas de problèmes de logement, d'argent, de relations et de violence.",
        Classification({}, "line-1", ["socially-vulnerable"], ["ambulatory"], cost="free"),
        "12025",
        "self-referral",
    ),
]


def contacts(rng: random.Random, role_fr: str) -> list[Contact]:
    out = []
    for _ in range(rng.choice((1, 1, 2))):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        slug = f"{first}.{last}".lower().replace(" ", "").replace("ï", "i").replace("è", "e")
        out.append(
            Contact(
                f"{first} {last}",
                role_fr,
                f"+32 2 {rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
                f"{slug}@example.org",
            )
        )
    return out


def verified(rng: random.Random) -> str:
    # mostly recent; about one in six older than a year (stale in results)
    days = rng.randint(20, 330) if rng.random() > 0.17 else rng.randint(400, 800)
    import datetime as dt

    return (dt.date(2026, 12, 1) - dt.timedelta(days=days)).isoformat()


def place(nis: str, rng: random.Random) -> Place:
    if nis in BRUSSELS:
        fr, nl, _zone, lat, lon, postal = BRUSSELS[nis]
        city, language = fr, "fr-BE"
    else:
        nl, fr, _zone, lat, lon, postal = FLANDERS[nis]
        city, language = nl, "nl-BE"
    return Place(
        street=rng.choice(["Rue de la Loi", "Chaussée de Gand", "Rue Haute", "Avenue Louise"])
        if language == "fr-BE"
        else rng.choice(["Kerkstraat", "Stationsstraat", "Dorpsplein", "Bondgenotenlaan"]),
        number=str(rng.randint(1, 200)),
        postal_code=postal,
        city=city,
        nis=nis,
        lat=round(lat + rng.uniform(-0.008, 0.008), 5),
        lon=round(lon + rng.uniform(-0.012, 0.012), 5),
        language=language,
    )


def extras(service: dict, extra: dict) -> None:
    ext = service["extension"]
    access = []
    if extra.get("referral"):
        access.append(
            {
                "url": "referral",
                "valueCoding": {"system": model.CS_REFERRAL, "code": extra["referral"]},
            }
        )
    if extra.get("waitingWeeks") is not None:
        access.append({"url": "waitingWeeks", "valueDecimal": extra["waitingWeeks"]})
    if extra.get("priorityPregnant"):
        access.append({"url": "priorityPregnant", "valueBoolean": True})
    if extra.get("available24x7"):
        access.append({"url": "available24x7", "valueBoolean": True})
    if access:
        ext.append({"url": model.EXT_ACCESS, "extension": access})
    if extra.get("periods"):
        ext.append(
            {
                "url": model.EXT_ELIGIBILITY,
                "extension": [
                    {
                        "url": "perinatalPeriod",
                        "valueCodeableConcept": {
                            "coding": [{"system": model.CS_PERIOD, "code": p}]
                        },
                    }
                    for p in extra["periods"]
                ],
            }
        )
    if extra.get("sessions"):
        for e in ext:
            if e["url"] == model.EXT_COST:
                e["extension"].append(
                    {"url": "reimbursedSessions", "valuePositiveInt": extra["sessions"]}
                )


def main() -> None:
    rng = random.Random(16)
    resources: list[dict] = []
    count = 0

    def add(record: ServiceRecord, extra: dict) -> None:
        nonlocal count
        built = build(record, verified(rng))
        extras(built[-1], extra)
        resources.extend(built)
        count += 1

    for nis, (fr, nl, _zone, *_rest) in BRUSSELS.items():
        for kind, role in (
            ("cpas", "assistant(e) social(e)"),
            ("one", "infirmier(ère) de consultation"),
        ):
            names, descriptions, cls, extra = KINDS[kind]
            add(
                ServiceRecord(
                    source="bib-local",
                    prefix="demo-sm",
                    identifier_system=model.ID_LOCAL,
                    source_id=f"{kind}-{nis}",
                    names={k: v.format(fr=fr, nl=nl) for k, v in names.items()},
                    descriptions=dict(descriptions),
                    organisation_id=f"{kind}-{nis}",
                    places=[place(nis, rng)],
                    phones=[
                        f"+32 2 {rng.randint(200, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
                    ],
                    contacts=contacts(rng, role),
                    languages=["fr", "nl"] + (["ar"] if rng.random() < 0.3 else []),
                    classes=[cls],
                    coverage=[(model.NIS, nis)],
                    last_verified=None,
                ),
                extra,
            )
    zones: dict[str, list[str]] = {}
    for nis, (_fr, _nl, zone, *_rest) in {**BRUSSELS, **FLANDERS}.items():
        zones.setdefault(zone, []).append(nis)
    for zone, members in zones.items():
        zfr, znl = ZONE_NAMES[zone]
        flemish = zone.startswith("elz-")
        for kind in (
            ("loss-group", "grief", "elp", "lactation", "kraamzorg", "interpreter", "one")
            if flemish
            else ("loss-group", "grief", "elp", "lactation", "kraamzorg")
        ):
            names, descriptions, cls, extra = KINDS[kind]
            if kind == "one" and flemish:
                names = {
                    "nl": "Consultatiebureau Kind en Gezin-stijl {znl} (fictief)",
                    "fr": "Consultation de type Kind en Gezin {zfr} (fictif)",
                }
            primary = ("nl", "fr", "en") if flemish else ("fr", "nl", "en")
            ordered_names = {
                k: names[k].format(zfr=zfr, znl=znl, zen=znl, fr=zfr, nl=znl)
                for k in primary
                if k in names
            }
            add(
                ServiceRecord(
                    source="bib-local",
                    prefix="demo-sm",
                    identifier_system=model.ID_LOCAL,
                    source_id=f"{kind}-{zone}",
                    names=ordered_names,
                    descriptions={k: descriptions[k] for k in primary if k in descriptions},
                    organisation_id=f"{kind}-{zone}",
                    places=[place(rng.choice(members), rng)],
                    phones=[
                        f"+32 {'16' if zone == 'elz-leuven' else '15' if flemish else '2'} {rng.randint(200, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
                    ],
                    contacts=contacts(rng, "coördinator" if flemish else "coordinatrice"),
                    languages=extra.get("languages", [])
                    + (
                        ["nl"] + (["fr", "en"] if rng.random() < 0.4 else [])
                        if flemish
                        else ["fr", "nl"] + (["en"] if rng.random() < 0.5 else [])
                    ),
                    classes=[cls],
                    coverage=[(model.CS_REGION, zone)],
                    last_verified=None,
                ),
                extra,
            )
    for nl_name, fr_name, nl_desc, fr_desc, cls, nis, referral in REGIONAL:
        flemish = nis in FLANDERS
        names = {"nl": nl_name, "fr": fr_name} if flemish else {"fr": fr_name, "nl": nl_name}
        desc = {"nl": nl_desc, "fr": fr_desc} if flemish else {"fr": fr_desc, "nl": nl_desc}
        extra = {
            "referral": referral,
            "waitingWeeks": rng.choice((0, 1, 2, 6)),
            "priorityPregnant": cls.care_line != "line-0",
        }
        if "24/7" in nl_name:
            extra["available24x7"] = True
        region = "region-flanders" if flemish else "region-brussels-capital"
        add(
            ServiceRecord(
                source="bib-local",
                prefix="demo-sm",
                identifier_system=model.ID_LOCAL,
                source_id=f"regional-{len(resources)}",
                names=names,
                descriptions=desc,
                places=[place(nis, rng)],
                phones=[
                    f"+32 2 {rng.randint(200, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
                ],
                contacts=contacts(rng, "intake"),
                languages=["nl", "fr", "en"],
                classes=[cls],
                coverage=[(model.CS_REGION, region)],
                last_verified=None,
            ),
            extra,
        )
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources
    ]
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}  # in order
    out = ROOT / "fhir_server" / "demo" / "30-social-map.json"
    out.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{count} services, {len(resources)} resources -> {out}")


if __name__ == "__main__":
    main()
