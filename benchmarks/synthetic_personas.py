"""Synthetic personas for the dedup benchmarks: distinct bases, and near-duplicates made by edits.

Bases are "A {trait} {occupation} from {place} who {activity}." with no two bases sharing an
(occupation, place) or (occupation, activity) pair, so two different bases never say nearly the same
thing; near-duplicates apply the edits a real pipeline produces: casing, punctuation, a dropped word,
two swapped words, and paraphrase-like substitutions.
"""

from __future__ import annotations

import random

TRAITS = """patient cheerful meticulous retired ambitious soft-spoken curious stubborn generous anxious
pragmatic idealistic self-taught award-winning newly-qualified semi-retired outspoken shy methodical
restless devout skeptical thrifty sociable""".split()
OCCUPATIONS = """welder nurse pianist actuary beekeeper pilot chemist librarian carpenter midwife surveyor
glassblower cartographer paramedic sommelier locksmith translator veterinarian archivist geologist
electrician baker bookbinder firefighter dentist ornithologist plumber statistician choreographer
tailor blacksmith pharmacist lifeguard stonemason animator auditor brewer cobbler curator
dietitian dispatcher economist farrier florist forester goldsmith hydrologist illustrator jeweler
journalist luthier machinist mechanic meteorologist miner notary optician organist paralegal
perfumer photographer physiotherapist potter printer puppeteer radiographer ranger realtor
roofer saddler sculptor seismologist shepherd shipwright surgeon taxidermist teacher therapist
toolmaker trucker upholsterer urbanist vintner weaver zookeeper astronomer barista
biologist cellist chef coach cryptographer drummer engineer epidemiologist fisherman gardener
historian judge linguist mathematician nanny oceanographer painter philosopher poet psychologist
sailor singer tiler violinist winemaker wrestler""".split()
PLACES = """Oslo Lima Nairobi Lisbon Hanoi Quebec Tucson Galway Perth Cusco Bergen Dakar Tbilisi Porto
Kyoto Valparaiso Accra Cork Fresno Tallinn Hobart Leeds Tromso Mendoza Izmir Goa Asheville Durban
Krakow Reno Salta Windhoek Bilbao Dundee Oaxaca Ghent Aarhus Cairns Halifax Medellin Zanzibar
Bruges Utrecht Lhasa Juneau Mombasa Seville Trieste Yerevan Boise Luxor Kochi Nantes Bologna
Sapporo Tampere Cuenca Arequipa Lecce Riga""".split()
ACTIVITIES = [
    "restores vintage motorcycles",
    "breeds tropical fish",
    "coaches a youth rugby team",
    "writes detective novels at night",
    "grows heirloom tomatoes",
    "volunteers at an animal shelter",
    "collects antique maps",
    "teaches evening classes in statistics",
    "builds model railways",
    "sings in a church choir",
    "runs ultramarathons in the mountains",
    "repairs old radios",
    "keeps a blog about fermentation",
    "plays chess in online tournaments",
    "restores stained glass",
    "organizes a neighborhood book club",
    "photographs migrating birds",
    "brews cider from wild apples",
    "translates poetry from Portuguese",
    "maps hiking trails for the park service",
    "mentors first-generation college students",
    "knits sweaters for a refugee charity",
    "studies medieval swordsmanship",
    "competes in barbecue contests",
    "paints murals in schools",
    "raises alpacas on a small farm",
    "hosts a podcast about urban history",
    "sails a wooden dinghy",
    "fixes bicycles for a community workshop",
    "collects vinyl records of West African jazz",
]
SYNONYMS = {
    "who": "that",
    "from": "based in",
    "restores": "repairs",
    "teaches": "gives",
    "writes": "pens",
    "grows": "cultivates",
    "collects": "gathers",
    "builds": "makes",
    "runs": "does",
    "repairs": "mends",
    "organizes": "runs",
    "volunteers": "helps out",
    "plays": "competes",
}


def bases(n: int, seed: int = 0) -> list[str]:
    """``n`` clearly different personas (at most a few thousand: the pairs above are the limit)."""
    rng = random.Random(seed)
    out, used_place, used_act = [], set(), set()
    while len(out) < n:
        t, o, p, a = rng.choice(TRAITS), rng.choice(OCCUPATIONS), rng.choice(PLACES), rng.choice(ACTIVITIES)
        if (o, p) in used_place or (o, a) in used_act:
            continue
        used_place.add((o, p))
        used_act.add((o, a))
        article = "An" if t[0] in "aeiou" else "A"
        out.append(f"{article} {t} {o} from {p} who {a}.")
    return out


VERBS = """studies collects restores photographs teaches maps sketches records repairs catalogues grows
translates reviews designs builds curates measures researches documents breeds""".split()
OBJECTS = [
    "medieval manuscripts",
    "migrating cranes",
    "vintage typewriters",
    "alpine glaciers",
    "tidal pools",
    "river otters",
    "desert cacti",
    "baroque organs",
    "coral reefs",
    "steam locomotives",
    "folk ballads",
    "cave paintings",
    "wild orchids",
    "mountain huts",
    "old lighthouses",
    "jazz standards",
    "street murals",
    "beetle species",
    "sourdough starters",
    "Roman coins",
    "paper kites",
    "solar ovens",
    "rooftop gardens",
    "opera librettos",
    "tram networks",
    "sea shanties",
    "mechanical clocks",
    "indigo dyes",
    "bonsai trees",
    "volcanic soils",
    "chess openings",
    "silent films",
    "hot springs",
    "apple varieties",
    "sand dunes",
    "kelp forests",
    "bird songs",
    "glass negatives",
    "Arctic lichens",
    "canal boats",
    "clay tablets",
    "mountain dialects",
    "wool tapestries",
    "comet orbits",
    "tea cultivars",
    "village archives",
    "fossil ferns",
    "radio plays",
    "harbour cranes",
    "salt marshes",
]


def many(n: int, seed: int = 0) -> list[str]:
    """``n`` varied personas for throughput runs (repeats are possible but rare)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t, o, p = rng.choice(TRAITS), rng.choice(OCCUPATIONS), rng.choice(PLACES)
        v1, v2 = rng.sample(VERBS, 2)
        a, b = rng.sample(OBJECTS, 2)
        article = "An" if t[0] in "aeiou" else "A"
        out.append(f"{article} {t} {o} from {p} who {v1} {a} and {v2} {b}.")
    return out


def near_duplicate(text: str, rng: random.Random) -> str:
    """One to two edits of the kinds a pipeline sees between two outputs that mean the same."""
    words = text.rstrip(".").split()
    for _ in range(rng.choice((1, 2))):
        kind = rng.choice(("case", "punct", "drop", "swap", "synonym"))
        if kind == "case":
            words = [w.lower() for w in words] if rng.random() < 0.5 else [w.capitalize() for w in words]
        elif kind == "drop" and len(words) > 8:
            del words[rng.randrange(2, len(words))]
        elif kind == "swap" and len(words) > 4:
            i = rng.randrange(1, len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif kind == "synonym":
            idx = [i for i, w in enumerate(words) if w.lower() in SYNONYMS]
            if idx:
                i = rng.choice(idx)
                words[i] = SYNONYMS[words[i].lower()]
    end = rng.choice((".", "!", "", "."))
    return " ".join(words) + end


def corpus(n_bases: int, n_dups: int, seed: int = 0) -> tuple[list[str], list[int | None]]:
    """Shuffled texts and, for each, the index of the base it copies (None for a base)."""
    rng = random.Random(seed)
    base = bases(n_bases, seed)
    items: list[tuple[str, int | None]] = [(b, None) for b in base]
    items += [(near_duplicate(base[j], rng), j) for j in (rng.randrange(n_bases) for _ in range(n_dups))]
    order = list(range(n_bases)) + [n_bases + k for k in rng.sample(range(n_dups), n_dups)]
    # bases first (so the original is the earliest), then the near-duplicates in random order
    texts = [items[i][0] for i in order]
    origin = [items[i][1] for i in order]
    return texts, origin
