# ruff: noqa: E501  (data: sentences are kept whole, one per line)
"""Synthetic social-map exports that look like the real ones, for the social-map benchmarks.

Services like the demo's (tools/build_social_map_demo.py): names and descriptions in Dutch and
French made of real words, spread over the 19 Brussels municipalities and Flemish towns (positions
scattered around the town centres), each of a *kind* drawn with realistic weights. Most of a
social map is general welfare (CAW, OCMW/CPAS, mental health, home care, debt and housing help);
perinatal offers, grief groups, interpreting and addiction care are a small share. So a free-text
word matches a share of the map like it does in real use ("deuil" about 1-2 %, "schulden" a few
%, "ouders" more), not every fourth service.

Brussels services come from Bruxelles Social (bilingual fr + nl), Flemish ones (and some Dutch
speaking ones in Brussels) from De Sociale Kaart (nl); ``records(fmt, start, stop)`` makes any
of the three import formats (``hsds`` in English) for the import-rate measurement.
Deterministic: the same arguments give the same records.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

# NIS: (nl, fr, lat, lon, postal code); town centres (real places and NIS codes)
BRUSSELS = {
    "21001": ("Anderlecht", "Anderlecht", 50.8365, 4.3083, "1070"),
    "21002": ("Oudergem", "Auderghem", 50.8167, 4.4333, "1160"),
    "21003": ("Sint-Agatha-Berchem", "Berchem-Sainte-Agathe", 50.8667, 4.2917, "1082"),
    "21004": ("Brussel", "Bruxelles", 50.8467, 4.3525, "1000"),
    "21005": ("Etterbeek", "Etterbeek", 50.8333, 4.3833, "1040"),
    "21006": ("Evere", "Evere", 50.8667, 4.4000, "1140"),
    "21007": ("Vorst", "Forest", 50.8117, 4.3178, "1190"),
    "21008": ("Ganshoren", "Ganshoren", 50.8711, 4.3086, "1083"),
    "21009": ("Elsene", "Ixelles", 50.8333, 4.3667, "1050"),
    "21010": ("Jette", "Jette", 50.8775, 4.3269, "1090"),
    "21011": ("Koekelberg", "Koekelberg", 50.8622, 4.3258, "1081"),
    "21012": ("Sint-Jans-Molenbeek", "Molenbeek-Saint-Jean", 50.8547, 4.3225, "1080"),
    "21013": ("Sint-Gillis", "Saint-Gilles", 50.8275, 4.3458, "1060"),
    "21014": ("Sint-Joost-ten-Node", "Saint-Josse-ten-Noode", 50.8531, 4.3736, "1210"),
    "21015": ("Schaarbeek", "Schaerbeek", 50.8676, 4.3737, "1030"),
    "21016": ("Ukkel", "Uccle", 50.8000, 4.3333, "1180"),
    "21017": ("Watermaal-Bosvoorde", "Watermael-Boitsfort", 50.7992, 4.4158, "1170"),
    "21018": ("Sint-Lambrechts-Woluwe", "Woluwe-Saint-Lambert", 50.8470, 4.4290, "1200"),
    "21019": ("Sint-Pieters-Woluwe", "Woluwe-Saint-Pierre", 50.8300, 4.4400, "1150"),
}
# Flemish towns: (nl, lat, lon, postal code, weight ~ size); NIS only where the demo has it
FLANDERS = [
    ("Antwerpen", 51.2194, 4.4025, "2000", 12, None),
    ("Gent", 51.0543, 3.7174, "9000", 9, None),
    ("Brugge", 51.2093, 3.2247, "8000", 4, None),
    ("Leuven", 50.8798, 4.7005, "3000", 4, "24062"),
    ("Mechelen", 51.0259, 4.4776, "2800", 3, "12025"),
    ("Aalst", 50.9378, 4.0403, "9300", 3, None),
    ("Hasselt", 50.9307, 5.3378, "3500", 3, None),
    ("Kortrijk", 50.8280, 3.2649, "8500", 3, None),
    ("Sint-Niklaas", 51.1650, 4.1430, "9100", 2, None),
    ("Oostende", 51.2300, 2.9200, "8400", 2, None),
    ("Genk", 50.9650, 5.5000, "3600", 2, None),
    ("Roeselare", 50.9469, 3.1227, "8800", 2, None),
    ("Turnhout", 51.3227, 4.9447, "2300", 2, None),
    ("Vilvoorde", 50.9281, 4.4250, "1800", 2, None),
    ("Dendermonde", 51.0290, 4.1010, "9200", 1, None),
    ("Lier", 51.1310, 4.5700, "2500", 1, None),
    ("Geel", 51.1610, 4.9900, "2440", 1, None),
    ("Ieper", 50.8510, 2.8850, "8900", 1, None),
    ("Tienen", 50.8070, 4.9380, "3300", 1, None),
    ("Halle", 50.7340, 4.2340, "1500", 1, None),
    ("Zaventem", 50.8850, 4.4730, "1930", 1, None),
    ("Herent", 50.9061, 4.6706, "3020", 1, "24038"),
    ("Bertem", 50.8656, 4.6283, "3060", 1, "24009"),
    ("Kortenberg", 50.8833, 4.5333, "3070", 1, "24055"),
    ("Bonheiden", 51.0228, 4.5414, "2820", 1, "12005"),
    ("Sint-Katelijne-Waver", 51.0667, 4.5333, "2860", 1, "12035"),
    ("Lokeren", 51.1030, 3.9930, "9160", 1, None),
    ("Waregem", 50.8890, 3.4250, "8790", 1, None),
    ("Mol", 51.1910, 5.1160, "2400", 1, None),
    ("Diest", 50.9890, 5.0510, "3290", 1, None),
    ("Tongeren", 50.7800, 5.4640, "3700", 1, None),
    ("Ninove", 50.8280, 4.0250, "9400", 1, None),
    ("Oudenaarde", 50.8450, 3.6050, "9700", 1, None),
    ("Asse", 50.9100, 4.2000, "1730", 1, None),
]
STREETS = [
    ("Kerkstraat", "Rue de l'Église"),
    ("Stationsstraat", "Rue de la Gare"),
    ("Molenstraat", "Rue du Moulin"),
    ("Schoolstraat", "Rue de l'École"),
    ("Nieuwstraat", "Rue Neuve"),
    ("Kasteelstraat", "Rue du Château"),
    ("Dorpsstraat", "Rue du Village"),
    ("Marktplein", "Place du Marché"),
    ("Lindenlaan", "Avenue des Tilleuls"),
    ("Hoogstraat", "Rue Haute"),
]
FIRST = ["An", "Sarah", "Youssef", "Marie", "Lotte", "Fatima", "Tom", "Claire", "Ahmed", "Els",
         "Nadia", "Pieter", "Inès", "Karim", "Sofie", "Julie", "Mehmet", "Hanne", "Aïcha", "Bram",
         "Lucas", "Emma", "Noah", "Louise", "Elif", "Samir", "Katrien", "Jonas", "Amina", "Wout"]  # fmt: skip
LAST = ["Peeters", "Dubois", "El Amrani", "Janssens", "Lambert", "Maes", "Benali", "Claes",
        "Dumont", "Willems", "Yilmaz", "Leclercq", "Vermeulen", "Diallo", "Goossens", "Mertens",
        "Jacobs", "Wouters", "De Smet", "Martin", "Lemaire", "Aydin", "Hermans", "Michiels"]  # fmt: skip
LANGUAGES_FLANDERS = ["nl", "nl", "nl", "en", "fr", "ar", "tr", "pl", "ro"]
LANGUAGES_BRUSSELS = ["fr", "nl", "fr", "en", "ar", "tr", "es", "pt", "ro", "prs"]


@dataclass(frozen=True)
class Kind:
    """One kind of service: its weight in the map, its classification in each format's table,
    its names and the sentences its descriptions are made of (nl, fr, en)."""

    weight: int
    rubric: str  # De Sociale Kaart (prefix of a mapped rubric)
    category: int  # Bruxelles Social
    term: str  # HSDS taxonomy
    names: tuple[str, str, str]
    sentences: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
    roles: tuple[str, str]


KINDS = [
    Kind(
        14,
        "03.01.01.",
        301,
        "default",
        (
            "Onthaal en begeleiding {town}",
            "Accueil et accompagnement social {town}",
            "Social welfare desk {town}",
        ),
        (
            (
                "Onthaal, informatie en begeleiding bij vragen over wonen, werk, geld en relaties.",
                "Wij luisteren, zoeken samen naar oplossingen en verwijzen door waar nodig.",
            ),
            (
                "Accueil, information et accompagnement pour les questions de logement, d'emploi, d'argent et de relations.",
                "Nous écoutons, cherchons des solutions ensemble et orientons si nécessaire.",
            ),
            ("Information and support with housing, work, money and relationships.",),
        ),
        ("maatschappelijk werker", "assistant social"),
    ),
    Kind(
        10,
        "03.02.01.",
        301,
        "default",
        (
            "OCMW {town} - sociale dienst",
            "CPAS de {town} - service social",
            "Public social welfare centre {town}",
        ),
        (
            (
                "Leefloon, financiële steun, medische kaart en begeleiding van gezinnen in een moeilijke situatie.",
                "Afspraak bij de maatschappelijk werker van uw wijk.",
            ),
            (
                "Revenu d'intégration, aide financière, carte médicale et accompagnement des familles en difficulté.",
                "Rendez-vous avec l'assistant social de votre quartier.",
            ),
            ("Social integration income, financial aid and support for families in hardship.",),
        ),
        ("maatschappelijk werker", "assistante sociale"),
    ),
    Kind(
        6,
        "03.01.02.",
        301,
        "default",
        ("Schuldhulpverlening {town}", "Médiation de dettes {town}", "Debt counselling {town}"),
        (
            (
                "Budgetbegeleiding en schuldbemiddeling bij schulden: samen een afbetalingsplan opmaken met uw schuldeisers.",
                "Gratis en vertrouwelijk.",
            ),
            (
                "Guidance budgétaire et médiation de dettes : établir ensemble un plan de paiement avec vos créanciers.",
                "Gratuit et confidentiel.",
            ),
            ("Budget coaching and debt mediation with your creditors.",),
        ),
        ("schuldbemiddelaar", "médiateur de dettes"),
    ),
    Kind(
        6,
        "03.01.03.",
        301,
        "default",
        (
            "Woonbegeleiding en huisvesting {town}",
            "Aide au logement {town}",
            "Housing support {town}",
        ),
        (
            (
                "Hulp bij het zoeken naar een woning, huurproblemen, uithuiszetting en sociale huisvesting.",
                "Begeleiding aan huis voor gezinnen met jonge kinderen.",
            ),
            (
                "Aide à la recherche d'un logement, problèmes de loyer, expulsion et logement social.",
                "Accompagnement à domicile des familles avec de jeunes enfants.",
            ),
            ("Help finding a home, rent problems, eviction and social housing.",),
        ),
        ("woonbegeleider", "accompagnatrice logement"),
    ),
    Kind(
        4,
        "03.01.04.",
        301,
        "default",
        (
            "Slachtofferhulp en familiaal geweld {town}",
            "Aide aux victimes et violences intrafamiliales {town}",
            "Victim support {town}",
        ),
        (
            (
                "Opvang en begeleiding van slachtoffers van partnergeweld, familiaal geweld en seksueel geweld.",
                "Ook een veilige opvang voor moeders met kinderen.",
            ),
            (
                "Accueil et accompagnement des victimes de violences conjugales, intrafamiliales et sexuelles.",
                "Aussi un hébergement sûr pour les mères avec enfants.",
            ),
            ("Support for victims of partner, family and sexual violence.",),
        ),
        ("hulpverlener", "intervenante"),
    ),
    Kind(
        10,
        "07.02.01.",
        201,
        "mental-health-care",
        (
            "Centrum geestelijke gezondheidszorg {town}",
            "Service de santé mentale {town}",
            "Mental health centre {town}",
        ),
        (
            (
                "Ambulante hulp bij psychische problemen: angst, depressie, trauma en relatieproblemen.",
                "Psychotherapie bij een psycholoog of psychiater voor volwassenen, kinderen en jongeren; bijdrage volgens inkomen.",
            ),
            (
                "Aide ambulatoire pour les difficultés psychiques : anxiété, dépression, traumatisme et problèmes relationnels.",
                "Psychothérapie pour adultes, enfants et adolescents ; participation selon les revenus.",
            ),
            ("Outpatient help with anxiety, depression, trauma and relationship problems.",),
        ),
        ("psycholoog", "psychologue"),
    ),
    Kind(
        6,
        "07.02.02.",
        201,
        "mental-health-care",
        (
            "Eerstelijnspsycholoog {town}",
            "Psychologue de première ligne {town}",
            "First-line psychologist {town}",
        ),
        (
            (
                "Kortdurende psychologische begeleiding met terugbetaalde sessies, zonder lange wachttijd.",
                "Voor stress, slaapproblemen, somberheid en piekeren.",
            ),
            (
                "Accompagnement psychologique de courte durée avec séances remboursées, sans longue attente.",
                "Pour le stress, les troubles du sommeil, la tristesse et les ruminations.",
            ),
            ("Short-term psychological support, reimbursed sessions.",),
        ),
        ("klinisch psycholoog", "psychologue clinicienne"),
    ),
    Kind(
        5,
        "07.05.01.",
        501,
        "substance-use-treatment",
        (
            "Drughulpverlening {town}",
            "Service d'aide en assuétudes {town}",
            "Drug and alcohol service {town}",
        ),
        (
            (
                "Hulp bij verslaving en problemen met alcohol, drugs, medicatie en gokken; ook voor naasten.",
                "Vervangingsbehandeling, begeleiding en preventie.",
            ),
            (
                "Aide pour les problèmes d'alcool, de drogues, de médicaments et de jeu ; aussi pour les proches.",
                "Traitement de substitution, accompagnement et prévention.",
            ),
            ("Help with alcohol, drugs, medication and gambling.",),
        ),
        ("verslavingsconsulent", "intervenant en assuétudes"),
    ),
    Kind(
        1,
        "07.05.02.",
        501,
        "substance-use-treatment",
        (
            "Verslavingszorg zwangerschap en ouderschap {town}",
            "Assuétudes, grossesse et parentalité {town}",
            "Substance use care in pregnancy {town}",
        ),
        (
            (
                "Verslavingszorg met perinatale expertise: snelle opstart, begeleiding tot twee jaar na de geboorte.",
                "Samenwerking met vroedvrouw, gynaecoloog en Kind en Gezin.",
            ),
            (
                "Soins des assuétudes avec expertise périnatale : démarrage rapide, accompagnement jusqu'aux deux ans de l'enfant.",
                "Collaboration avec la sage-femme, le gynécologue et l'ONE.",
            ),
            ("Addiction care with perinatal expertise.",),
        ),
        ("perinataal verslavingsconsulent", "intervenante périnatale"),
    ),
    Kind(
        4,
        "13.08.01.",
        102,
        "prenatal-care",
        (
            "Consultatiebureau Kind en Gezin {town}",
            "Consultation ONE {town}",
            "Child health clinic {town}",
        ),
        (
            (
                "Gratis preventieve opvolging van baby's en peuters: groei, ontwikkeling, vaccinaties.",
                "Advies over voeding, slapen en opvoeding.",
            ),
            (
                "Suivi préventif gratuit des bébés et jeunes enfants : croissance, développement, vaccinations.",
                "Conseils sur l'alimentation, le sommeil et l'éducation.",
            ),
            ("Free preventive care for babies and toddlers.",),
        ),
        ("verpleegkundige", "infirmière"),
    ),
    Kind(
        3,
        "13.08.05.",
        101,
        "prenatal-care",
        (
            "Prenatale begeleiding vroedvrouw {town}",
            "Suivi de grossesse sage-femme {town}",
            "Midwife antenatal care {town}",
        ),
        (
            (
                "Een vroedvrouw volgt uw zwangerschap op, thuis of in de praktijk, en bereidt de bevalling voor.",
                "Ook postnatale zorg en ondersteuning bij borstvoeding.",
            ),
            (
                "Une sage-femme suit votre grossesse, à domicile ou au cabinet, et prépare l'accouchement.",
                "Aussi les soins postnatals et le soutien à l'allaitement.",
            ),
            ("A midwife follows your pregnancy at home or in practice.",),
        ),
        ("vroedvrouw", "sage-femme"),
    ),
    Kind(
        2,
        "13.08.02.",
        101,
        "prenatal-care",
        (
            "Kraamzorg aan huis {town}",
            "Aide à la maternité à domicile {town}",
            "Maternity home care {town}",
        ),
        (
            (
                "Een kraamverzorgende komt aan huis in de eerste weken na de geboorte: zorg voor moeder en baby.",
                "Hulp in het huishouden en bij de verzorging van de pasgeborene.",
            ),
            (
                "Une aide à la maternité vient à domicile les premières semaines après la naissance : soins à la mère et au bébé.",
                "Aide ménagère et soins au nouveau-né.",
            ),
            ("Maternity care at home in the first weeks after birth.",),
        ),
        ("kraamverzorgende", "aide à la maternité"),
    ),
    Kind(
        2,
        "13.08.04.",
        101,
        "prenatal-care",
        (
            "Borstvoeding en lactatiekundige {town}",
            "Consultante en lactation {town}",
            "Lactation consultant {town}",
        ),
        (
            (
                "Huisbezoeken door een lactatiekundige en een maandelijkse borstvoedingsgroep.",
                "Advies bij pijn, weinig melk of afkolven bij de terugkeer naar het werk.",
            ),
            (
                "Visites à domicile d'une consultante en lactation et groupe d'allaitement mensuel.",
                "Conseils en cas de douleur, de manque de lait ou de tire-lait à la reprise du travail.",
            ),
            ("Home visits by a lactation consultant and a monthly breastfeeding group.",),
        ),
        ("lactatiekundige", "consultante en lactation"),
    ),
    Kind(
        1,
        "13.08.03.",
        103,
        "bereavement",
        (
            "Praatgroep rouw na zwangerschapsverlies {town}",
            "Groupe de parole deuil périnatal {town}",
            "Pregnancy loss support group {town}",
        ),
        (
            (
                "Maandelijkse groep voor ouders na een miskraam, doodgeboorte of het overlijden van hun baby.",
                "Rouwbegeleiding en lotgenotencontact in een warme sfeer.",
            ),
            (
                "Groupe mensuel pour les parents après une fausse couche, une mort in utero ou le décès de leur bébé.",
                "Accompagnement du deuil et rencontres entre parents dans un cadre bienveillant.",
            ),
            (
                "Monthly group for parents after miscarriage, stillbirth or the death of their baby.",
            ),
        ),
        ("rouwconsulente", "psychologue périnatale"),
    ),
    Kind(
        3,
        "11.03.01.",
        401,
        "interpretation",
        ("Sociaal tolken {town}", "Interprétariat social {town}", "Community interpreting {town}"),
        (
            (
                "Tolken Arabisch, Turks, Dari, Tigrinya en Roemeens, telefonisch of ter plaatse.",
                "Voor consultaties bij dokter, vroedvrouw, OCMW en school.",
            ),
            (
                "Interprètes en arabe, turc, dari, tigrinya et roumain, par téléphone ou sur place.",
                "Pour les consultations chez le médecin, la sage-femme, au CPAS et à l'école.",
            ),
            ("Interpreters in Arabic, Turkish, Dari, Tigrinya and Romanian.",),
        ),
        ("tolk", "interprète"),
    ),
    Kind(
        6,
        "03.01.05.",
        301,
        "parenting-education",
        (
            "Opvoedingsondersteuning en gezinsbegeleiding {town}",
            "Soutien à la parentalité {town}",
            "Parenting support {town}",
        ),
        (
            (
                "Ouders met vragen over opvoeding, slapen, eten en ruzie kunnen bij ons terecht.",
                "Huisbezoeken, oudergroepen en een opvoedingswinkel.",
            ),
            (
                "Les parents qui ont des questions d'éducation, de sommeil, d'alimentation ou de conflits sont les bienvenus.",
                "Visites à domicile, groupes de parents et un point d'information parentalité.",
            ),
            ("Parenting advice, home visits and parent groups.",),
        ),
        ("gezinsondersteuner", "éducatrice"),
    ),
    Kind(
        5,
        "03.02.02.",
        301,
        "default",
        (
            "Thuiszorg en gezinszorg {town}",
            "Aide familiale et soins à domicile {town}",
            "Home care {town}",
        ),
        (
            (
                "Gezinszorg, poetshulp en thuisverpleging voor gezinnen, ouderen en mensen met een beperking.",
                "Bijdrage volgens inkomen.",
            ),
            (
                "Aide familiale, aide ménagère et soins infirmiers à domicile pour les familles, les aînés et les personnes handicapées.",
                "Participation selon les revenus.",
            ),
            ("Home help and home nursing for families and older people.",),
        ),
        ("verzorgende", "aide familiale"),
    ),
    Kind(
        4,
        "03.01.06.",
        302,
        "default",
        (
            "Juridisch advies en vreemdelingenrecht {town}",
            "Conseil juridique et droit des étrangers {town}",
            "Legal advice {town}",
        ),
        (
            (
                "Gratis eerstelijns juridisch advies over verblijf, gezinshereniging, huur en arbeidsrecht.",
                "Ook voor mensen zonder papieren.",
            ),
            (
                "Conseil juridique gratuit de première ligne sur le séjour, le regroupement familial, le bail et le droit du travail.",
                "Aussi pour les personnes sans papiers.",
            ),
            ("Free legal advice on residence, family reunification and housing.",),
        ),
        ("jurist", "juriste"),
    ),
    Kind(
        4,
        "03.01.07.",
        301,
        "default",
        (
            "Jongerenwerking en jeugdhulp {town}",
            "Service jeunesse et aide à la jeunesse {town}",
            "Youth service {town}",
        ),
        (
            (
                "Vrijetijdsaanbod, huiswerkbegeleiding en een luisterend oor voor jongeren van 12 tot 25 jaar.",
                "Ook begeleiding van jonge ouders.",
            ),
            (
                "Activités de loisirs, école de devoirs et une écoute pour les jeunes de 12 à 25 ans.",
                "Aussi un accompagnement des jeunes parents.",
            ),
            ("Leisure, homework help and a listening ear for young people.",),
        ),
        ("jeugdwerker", "animateur jeunesse"),
    ),
]


def _weighted(items: list[Any], weights: list[int], rng: random.Random) -> Any:
    return rng.choices(items, weights=weights, k=1)[0]


_KIND_WEIGHTS = [k.weight for k in KINDS]
_TOWN_WEIGHTS = [t[4] for t in FLANDERS]


@dataclass
class Service:
    """One generated service, before it is written in a format."""

    index: int
    kind: Kind
    brussels: bool
    town_nl: str
    town_fr: str
    nis: str | None
    postal: str
    lat: float
    lon: float
    street: tuple[str, str]
    number: int
    languages: list[str]
    contacts: list[tuple[str, str, str]]  # name, role nl, role fr
    verified: str
    extra: tuple[int, ...]  # which extra sentences (indices)


def service(index: int, brussels: bool | None = None) -> Service:
    """Service ``index``; ``brussels`` forces where it is (Bruxelles Social lists Brussels only)."""
    rng = random.Random(index * 7919 + 17)
    kind = _weighted(KINDS, _KIND_WEIGHTS, rng)
    in_brussels = rng.random() < 0.3
    brussels = in_brussels if brussels is None else brussels
    if brussels:
        nis = rng.choice(sorted(BRUSSELS))
        town_nl, town_fr, lat, lon, postal = BRUSSELS[nis]
        spread = 0.012
    else:
        town_nl, lat, lon, postal, _, nis = _weighted(FLANDERS, _TOWN_WEIGHTS, rng)
        town_fr = town_nl
        spread = 0.035
    pool = LANGUAGES_BRUSSELS if brussels else LANGUAGES_FLANDERS
    languages = list(dict.fromkeys([pool[0] if not brussels else "fr", *rng.sample(pool, 2)]))
    if brussels and rng.random() < 0.7:
        languages.insert(1, "nl")
    contacts = []
    for _ in range(rng.choice((1, 1, 2))):
        contacts.append((f"{rng.choice(FIRST)} {rng.choice(LAST)}", *kind.roles))
    month = rng.randint(1, 11) if rng.random() > 0.15 else rng.randint(1, 12)
    year = 2026 if rng.random() > 0.15 else 2024
    return Service(
        index=index,
        kind=kind,
        brussels=brussels,
        town_nl=town_nl,
        town_fr=town_fr,
        nis=nis,
        postal=postal,
        lat=round(lat + rng.gauss(0, spread), 5),
        lon=round(lon + rng.gauss(0, spread * 1.5), 5),
        street=rng.choice(STREETS),
        number=rng.randint(1, 250),
        languages=list(dict.fromkeys(languages)),
        contacts=contacts,
        verified=f"{year}-{month:02d}-{rng.randint(1, 28):02d}",
        extra=tuple(rng.sample(range(len(EXTRA[0])), 2)),
    )


# sentences any service may add (opening, access); real words, common ones
EXTRA = (
    (
        "Open van maandag tot vrijdag.",
        "Op afspraak.",
        "Vrije inloop op woensdagnamiddag.",
        "Bereikbaar met tram en bus.",
        "Toegankelijk voor rolstoelgebruikers.",
        "Ook 's avonds en op zaterdag.",
        "Aanmelden via telefoon of e-mail.",
        "Voor inwoners van de regio.",
    ),
    (
        "Ouvert du lundi au vendredi.",
        "Sur rendez-vous.",
        "Permanence sans rendez-vous le mercredi après-midi.",
        "Accessible en tram et en bus.",
        "Accessible aux personnes en chaise roulante.",
        "Aussi en soirée et le samedi.",
        "Inscription par téléphone ou par e-mail.",
        "Pour les habitants de la région.",
    ),
    (
        "Open Monday to Friday.",
        "By appointment.",
        "Drop-in on Wednesday afternoon.",
        "Reachable by tram and bus.",
        "Wheelchair accessible.",
        "Also evenings and Saturdays.",
        "Register by phone or e-mail.",
        "For residents of the region.",
    ),
)


def _description(s: Service, lang: int) -> str:
    return " ".join([*s.kind.sentences[lang], *(EXTRA[lang][i] for i in s.extra)])


def _name(s: Service, lang: int) -> str:
    town = s.town_fr if lang == 1 else s.town_nl
    return s.kind.names[lang].format(town=town)


def sociale_kaart(s: Service) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": {"id": 1_000_000 + s.index, "authenticSource": "SOCIALE_KAART"},
        "legalName": {"description": f"{_name(s, 0)} vzw"},
        "name": {"description": _name(s, 0)},
        "description": {"description": _description(s, 0)},
        "type": "HEALTH_OFFER",
        "state": "ACTIVE",
        "verified": True,
        "lastUpdated": f"{s.verified}T09:00:00Z",
        "rubrics": [{"code": s.kind.rubric}],
        "organisation": {"id": 500_000 + s.index, "name": {"description": f"{_name(s, 0)} vzw"}},
        "addresses": [
            {
                "primary": True,
                "street": {"name": {"description": s.street[0]}},
                "number": str(s.number),
                "municipality": {
                    "postalCode": s.postal,
                    "name": {"description": s.town_nl},
                    **({"nisCode": s.nis} if s.nis else {}),
                },
                "location": {"lat": s.lat, "lon": s.lon},
            }
        ],
        "contactInfo": {
            "phones": [{"value": f"+32 2 {s.index % 1000:03d} {s.index // 1000 % 100:02d} 00"}],
            "emails": [{"value": f"info{s.index}@dienst.example", "primary": True}],
        },
        "contactPersons": [{"name": name, "function": role} for name, role, _ in s.contacts],
        "languages": s.languages,
    }
    return record


def bruxelles_social(s: Service) -> dict[str, Any]:
    return {
        "id": 2_000_000 + s.index,
        "nameOfficialFr": _name(s, 1),
        "nameOfficialNl": _name(s, 0),
        "descriptionFr": _description(s, 1),
        "descriptionNl": _description(s, 0),
        "permanencyFr": EXTRA[1][s.extra[0]],
        "permanencyNl": EXTRA[0][s.extra[0]],
        "address": {
            "streetFr": s.street[1],
            "streetNl": s.street[0],
            "number": str(s.number),
            "postalCode": s.postal,
            "municipalityFr": s.town_fr,
            "municipalityNl": s.town_nl,
            **({"nis": s.nis} if s.nis else {}),
            "lat": s.lat,
            "lon": s.lon,
        },
        "phone": f"+32 2 {s.index % 1000:03d} {s.index // 1000 % 100:02d} 00",
        "emailFr": f"info{s.index}@service.example",
        "categories": [{"id": s.kind.category, "labelFr": "", "labelNl": ""}],
        "languageOffer": s.languages,
        "contacts": [
            {"name": name, "functionFr": fr, "functionNl": nl} for name, nl, fr in s.contacts
        ],
        "lastUpdate": s.verified,
    }


def hsds(s: Service) -> dict[str, Any]:
    ids = uuid.UUID(int=s.index)
    return {
        "id": str(ids),
        "name": _name(s, 2),
        "description": _description(s, 2),
        "status": "active",
        "email": f"info{s.index}@service.example",
        "assured_date": s.verified,
        "organization": {
            "id": str(uuid.UUID(int=s.index + (1 << 64))),
            "name": _name(s, 2),
            "description": s.kind.sentences[2][0],
        },
        "phones": [{"id": str(uuid.UUID(int=s.index + (2 << 64))), "number": "+32 2 000 00 00"}],
        "languages": [
            {"id": str(uuid.UUID(int=s.index + ((3 + i) << 64))), "code": code}
            for i, code in enumerate(s.languages)
        ],
        "contacts": [
            {"id": str(uuid.UUID(int=s.index + (10 << 64))), "name": name, "title": role}
            for name, role, _ in s.contacts[:1]
        ],
        "service_at_locations": [
            {
                "id": str(uuid.UUID(int=s.index + (11 << 64))),
                "location": {
                    "id": str(uuid.UUID(int=s.index + (12 << 64))),
                    "location_type": "physical",
                    "name": s.town_nl,
                    "latitude": s.lat,
                    "longitude": s.lon,
                    "addresses": [
                        {
                            "id": str(uuid.UUID(int=s.index + (13 << 64))),
                            "address_1": f"{s.street[0]} {s.number}",
                            "city": s.town_nl,
                            "region": "Brussels" if s.brussels else "Flanders",
                            "state_province": "Brussels" if s.brussels else "Flanders",
                            "postal_code": s.postal,
                            "country": "BE",
                            "address_type": "physical",
                        }
                    ],
                },
            }
        ],
        "attributes": [
            {
                "id": str(uuid.UUID(int=s.index + (14 << 64))),
                "link_id": str(ids),
                "link_type": "service",
                "link_entity": "service",
                "taxonomy_term": {
                    "id": str(uuid.UUID(int=s.index + (15 << 64))),
                    "code": s.kind.term,
                    "name": s.kind.term,
                    "description": s.kind.names[2].format(town="").strip(),
                },
            }
        ],
    }


WRITERS = {"sociale-kaart": sociale_kaart, "bruxelles-social": bruxelles_social, "hsds": hsds}


def records(fmt: str, start: int, stop: int) -> list[dict[str, Any]]:
    """Records ``start..stop-1`` in one format (every service, wherever it is)."""
    write = WRITERS[fmt]
    brussels = True if fmt == "bruxelles-social" else None
    return [write(service(i, brussels)) for i in range(start, stop)]


def mixed(start: int, stop: int) -> dict[str, list[dict[str, Any]]]:
    """The map as the sources hold it: Brussels services from Bruxelles Social (fr + nl), except
    one in five (Dutch-speaking services in Brussels are on De Sociale Kaart), Flemish ones from
    De Sociale Kaart (nl)."""
    out: dict[str, list[dict[str, Any]]] = {"sociale-kaart": [], "bruxelles-social": []}
    for index in range(start, stop):
        s = service(index)
        if s.brussels and index % 5:
            out["bruxelles-social"].append(bruxelles_social(s))
        else:
            out["sociale-kaart"].append(sociale_kaart(s))
    return out


def service_id(index: int) -> str:
    """The HealthcareService id the import gives service ``index`` in the mixed map."""
    s = service(index)
    if s.brussels and index % 5:
        return f"bs-{2_000_000 + index}"
    return f"sk-{1_000_000 + index}"


# what professionals type: selective words (a kind or two) and broader ones, nl and fr
QUERY_WORDS = [
    "deuil", "rouw", "miskraam", "allaitement", "borstvoeding", "kraamzorg", "tolk",
    "interprète", "verslaving", "assuétudes", "drogues", "schulden", "dettes", "huisvesting",
    "logement", "vroedvrouw", "sage-femme", "zwangerschap", "grossesse", "psycholoog",
    "psychologue", "depressie", "dépression", "geweld", "violences", "papieren", "opvoeding",
    "parentalité", "leefloon", "jongeren", "thuiszorg", "ouders",
]  # fmt: skip
TARGET_GROUPS = ["socially-vulnerable", "substance-use", "language-barrier", "pregnancy-or-infant-loss"]  # fmt: skip
