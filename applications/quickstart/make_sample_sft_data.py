"""Generate the small bilingual (English / Simplified Chinese) quickstart SFT corpus.

Every conversation is produced here from hand-written templates and slot
fillers; nothing is copied from books, websites or datasets. Conversations about
the invented Calvessa Islands (卡尔维萨群岛) take their facts from the fact table
`tables/facts.yaml` that `make_sample_data.py` reads too, and quote its
encyclopedia paragraphs, so the answers agree with the pretraining corpus; the
everyday conversations (arithmetic, unit conversion, planning a day, writing a
note) are written here too.

The texts live in YAML tables beside this script (`tables/chat.yaml`: the phrase
table, `trips.yaml`, `everyday_chat.yaml`, `instruct.yaml`); this file holds
only the slot logic that picks and fills them. It imports the sibling script
`make_sample_data.py`, which Python finds because both lie in the folder of the
script being run.

Files written to `data/sft/` next to this script (JSON Lines, UTF-8, one object
per line with exactly the keys `messages` and `category`; `messages` is a list
of {"from": "human" | "assistant", "content": ...} that alternates human,
assistant, ... and ends with an assistant reply):

    chat_en.jsonl      multi-turn English conversations (1 to 6 turns)
    chat_zh.jsonl      multi-turn Chinese conversations (1 to 6 turns)
    instruct_en.jsonl  single-turn English instructions (rewrite, summarise,
                       list, translate into Chinese, classify)

Some conversations hold a long reply (600+ characters) after a short first turn,
so that they need truncation at a max length of 256 tokens; first turns are kept
short so that truncation keeps at least one turn instead of dropping the record.

Run it from the repository root:

    python applications/quickstart/make_sample_sft_data.py            # default: --seed 0
    python applications/quickstart/make_sample_sft_data.py --out /tmp/sft

The output is committed to the repository. Generation uses only
`random.Random(seed)` and ordered data, so regenerating with the same seed must
give byte-identical files.
"""

from __future__ import annotations

import random
from pathlib import Path

import make_sample_data as base

FACTS = base.FACTS
PHRASES = base.load_table("chat")
TRIPS = base.load_table("trips")
EVERYDAY = base.load_table("everyday_chat")
INSTRUCT = base.load_table("instruct")
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "sft"
FORBIDDEN = ("<s>", "</s>", "<unk>", "<|", "[INST]")
num, join = base.num, base.join


def say(rng: random.Random, lang: str, key: str, **slots) -> str:
    """Phrase `key` of the phrase table in `lang`, one wording drawn from `rng`, filled."""
    return rng.choice(PHRASES[key][lang]).format(**slots)


def text(lang: str, key: str, **slots) -> str:
    """Fixed text `key` of the phrase table in `lang` (nothing drawn), filled."""
    return PHRASES[key][lang].format(**slots)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
def nv(slot: str, value: str) -> dict:
    """A slot and its sentence-initial form: {"town": "the Crown", "Town": "The Crown"}."""
    return {slot: value, slot.capitalize(): base.cap(value)}


def fmt1(x: float) -> str:
    """One decimal, without a trailing `.0`."""
    out = f"{x:.1f}"
    return out[:-2] if out.endswith(".0") else out


def marks(pennets: int) -> str:
    return f"{pennets // 100}.{pennets % 100:02d}" if pennets % 100 else str(pennets // 100)


def hm(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def dur(minutes: int, lang: str) -> str:
    h, m = divmod(minutes, 60)
    if lang == "zh":
        return (f"{h}小时" if h else "") + (f"{m}分钟" if m else "")
    parts = [f"{h} hour{'s' * (h != 1)}"] * bool(h) + [f"{m} minute{'s' * (m != 1)}"] * bool(m)
    return " and ".join(parts)


def fahrenheit(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def ferry(a: str, b: str) -> dict | None:
    for f in FACTS["ferries"]:
        if {f["from"], f["to"]} == {a, b}:
            return f
    return None


def island_of(town: str) -> str:
    return FACTS["towns"][town]["island"]


def sentence(fact: str, lang: str) -> str:
    """A text of facts.yaml as a sentence of its own."""
    return text(lang, "sentence", **nv("text", fact))


# ---------------------------------------------------------------------------
# Conversations about the islands: each builder returns the full chain of
# (human, assistant) turns; later turns refer back to earlier ones.
# ---------------------------------------------------------------------------
def island_slots(key: str, lang: str) -> dict:
    i = FACTS["islands"][key]
    m = FACTS["mountains"][i["highest"]]
    return {**nv("island", i["name"][lang]), **nv("mountain", m["name"][lang]), "height": num(m["height_m"], lang),
            "mnote": m["note"][lang], "inote": i["note"][lang], "position": i["position"][lang],
            "landscape": i["landscape"][lang], "pop": num(i["population"], lang),
            "wpop": num(FACTS["world"]["population"], lang),
            "pct": fmt1(100 * i["population"] / FACTS["world"]["population"])}


def towns_answer(rng: random.Random, key: str, lang: str, s: dict) -> str:
    towns = [base.nm("towns", t, lang) for t in base.of_island("towns", key)]
    which = "towns_many" if len(towns) > 1 else "towns_one" if towns else "towns_none"
    return say(rng, lang, which, **s, towns=join(towns, lang))


def island_vs(rng: random.Random, key: str, other: str, lang: str, s: dict) -> tuple[str, str]:
    a, b = FACTS["islands"][key]["area_km2"], FACTS["islands"][other]["area_km2"]
    o = {**s, **nv("other", base.nm("islands", other, lang)), "a": num(a, lang), "b": num(b, lang),
         "d": num(abs(a - b), lang)}
    return say(rng, lang, "isl_vs_q", **o), say(rng, lang, "isl_vs_yes" if a > b else "isl_vs_no", **o)


def turns(rng: random.Random, lang: str, s: dict, *keys) -> list[tuple[str, str]]:
    """The turns (question `k_q`, answer `k_a`) for each phrase key prefix `k`, both filled from `s`."""
    return [(say(rng, lang, f"{k}_q", **s), say(rng, lang, f"{k}_a", **s)) for k in keys]


def conv_island(rng: random.Random, lang: str) -> list:
    key = rng.choice(list(FACTS["islands"]))
    s = island_slots(key, lang)
    other = rng.choice([k for k in FACTS["islands"] if k != key])
    return [*turns(rng, lang, s, "isl", "isl_high", "tall"),
            (say(rng, lang, "isl_towns_q", **s), towns_answer(rng, key, lang, s)),
            *turns(rng, lang, s, "isl_pop"), island_vs(rng, key, other, lang, s)]


def mountain_rivers(rng: random.Random, key: str, lang: str, s: dict) -> str:
    rivers = [r["name"][lang] for r in FACTS["rivers"].values() if r["source"] == key]
    if not rivers:
        return say(rng, lang, "mt_riv_no", **s)
    verb = "rises" if len(rivers) == 1 else "both rise"
    return say(rng, lang, "mt_riv_yes", **s, rivers=base.cap(join(rivers, lang)), verb=verb)


def conv_mountain(rng: random.Random, lang: str) -> list:
    isl = rng.choice(list(FACTS["islands"]))
    key = FACTS["islands"][isl]["highest"]
    s = {**island_slots(isl, lang), "world": FACTS["world"]["name"][lang]}
    h0, h = FACTS["mountains"]["mount_obren"]["height_m"], FACTS["mountains"][key]["height_m"]
    third = ((say(rng, lang, "mt_obren_q"), say(rng, lang, "mt_obren_a", **s)) if key == "mount_obren" else
             (say(rng, lang, "mt_cmp_q"), say(rng, lang, "mt_cmp_a", **s, d=num(h0 - h, lang), h0=num(h0, lang))))
    return [(say(rng, lang, "mt_q", **s), say(rng, lang, "isl_high_a", **s)),
            *turns(rng, lang, s, "tall"), third,
            (say(rng, lang, "mt_riv_q", **s), mountain_rivers(rng, key, lang, s))]


def route_answer(rng: random.Random, key: str, lang: str) -> str:
    s = {"town": base.nm("towns", key, lang), "island": base.nm("islands", island_of(key), lang)}
    direct = ferry("port_aurel", key)
    if direct:
        return say(rng, lang, "route_direct", **s, km=direct["km"], min=direct["minutes"])
    if island_of(key) == "tarn_major":
        return say(rng, lang, "route_road", **s)
    for f in FACTS["ferries"]:
        if f["from"] == "port_aurel" and island_of(f["to"]) == island_of(key):
            return say(rng, lang, "route_hub", **s, hub=base.nm("towns", f["to"], lang), min=f["minutes"])
    for f in FACTS["ferries"]:
        if f["to"] == key and island_of(f["from"]) == "tarn_major":
            return say(rng, lang, "route_port", **s, hub=base.nm("towns", f["from"], lang), km=f["km"],
                       min=f["minutes"])
    raise ValueError(f"no route from Port Aurel to {key}")


def conv_town(rng: random.Random, lang: str) -> list:
    key = rng.choice([k for k in FACTS["towns"] if k != "port_aurel"])
    t = FACTS["towns"][key]
    isl = FACTS["islands"][t["island"]]
    s = {**nv("town", t["name"][lang]), "island": isl["name"][lang], "position": isl["position"][lang],
         "known": t["known_for"][lang], "year": t["founded"], "pop": num(t["population"], lang),
         "gap": t["founded"] - FACTS["towns"]["port_aurel"]["founded"]}
    return [*turns(rng, lang, s, "town", "known", "founded", "tpop"),
            (say(rng, lang, "route_q"), route_answer(rng, key, lang))]


def conv_river(rng: random.Random, lang: str) -> list:
    key, other = rng.sample(list(FACTS["rivers"]), 2)
    r, o = FACTS["rivers"][key], FACTS["rivers"][other]
    a, b = r["length_km"], o["length_km"]
    s = {**nv("river", r["name"][lang]), **nv("other", o["name"][lang]), "length": a, "b": b, "d": abs(a - b),
         "source": base.nm("mountains", r["source"], lang), "island": base.nm("islands", r["island"], lang),
         "mouth": r["mouth"][lang]}
    return [*turns(rng, lang, s, "riv", "riv_src", "riv_end"), (say(rng, lang, "riv_note_q"), r["note"][lang]),
            (say(rng, lang, "riv_vs_q", **s), say(rng, lang, "riv_vs_yes" if a > b else "riv_vs_no", **s))]


def conv_animal(rng: random.Random, lang: str) -> list:
    a = FACTS["animals"][rng.choice(list(FACTS["animals"]))]
    s = {"animal": a["name"][lang], "kind": a["kind"][lang], "range": a["range"][lang], "diet": a["diet"][lang],
         "size": a["size"][lang], "unit": a["unit"][lang], "est": num(a["estimate"] or 0, lang)}
    count = say(rng, lang, "count_a" if a["estimate"] else "count_none", **s)
    return [*turns(rng, lang, s, "ani", "diet", "size"), (say(rng, lang, "count_q"), count),
            (say(rng, lang, "trait_q"), sentence(a["trait"][lang], lang))]


def conv_plant(rng: random.Random, lang: str) -> list:
    p = FACTS["plants"][rng.choice(list(FACTS["plants"]))]
    on = p["range"]["en"].startswith(("the coasts", "the slopes", "the terraces", "the ground"))
    s = {**nv("plant", p["name"][lang]), "kind": p["kind"][lang], "range": p["range"][lang],
         "size": p["size"][lang], "prep": "on" if on else "in"}
    return [*turns(rng, lang, s, "pl", "pl_size"), (say(rng, lang, "pl_use_q"), sentence(p["use"][lang], lang)),
            (say(rng, lang, "pl_trait_q"), sentence(p["trait"][lang], lang))]


def conv_ferry(rng: random.Random, lang: str) -> list:
    f = rng.choice(FACTS["ferries"])
    a, b = rng.sample([f["from"], f["to"]], 2)
    dep, wait = rng.randrange(7 * 60, 15 * 60, 5), rng.randrange(20, 95, 5)
    arr = dep + f["minutes"]
    s = {"a": base.nm("towns", a, lang), "b": base.nm("towns", b, lang), "km": f["km"], "min": f["minutes"],
         "dep": hm(dep), "arr": hm(arr), "wait": wait, "dep2": hm(arr + wait), "arr2": hm(arr + wait + f["minutes"]),
         "speed": fmt1(f["km"] * 60 / f["minutes"])}
    return turns(rng, lang, s, "fer", "fer_dep", "fer_back", "fer_speed")


def history_event(year: int) -> dict:
    return next(e for e in FACTS["history"] if e["year"] == year)


def conv_festival(rng: random.Random, lang: str) -> list:
    f, star = FACTS["festival"], FACTS["plants"]["starbell"]
    s = {"dates": f["dates"][lang], "town": base.nm("towns", f["town"], lang), "kind": star["kind"][lang],
         **nv("trait", star["trait"][lang]), "lanterns": num(f["lanterns"], lang), "first": f["first_year"],
         "detail": history_event(f["first_year"])["detail"][lang], "visitors": num(f["visitors"], lang)}
    return [*turns(rng, lang, s, "fest", "fest_name", "fest_night"), (say(rng, lang, "fest_end_q"), base.race(lang)),
            *turns(rng, lang, s, "fest_first", "fest_vis")]


def conv_history(rng: random.Random, lang: str) -> list:
    events = FACTS["history"]
    i = rng.randrange(1, len(events) - 1)
    e, nxt, y0 = events[i], events[i + 1], events[0]["year"]
    return [(say(rng, lang, "his_q", year=e["year"]), say(rng, lang, "his_a", year=e["year"], event=e["event"][lang])),
            (say(rng, lang, "his_more_q"), e["detail"][lang]),
            (say(rng, lang, "his_gap_q"), say(rng, lang, "his_gap_a", y0=y0, gap=e["year"] - y0)),
            (say(rng, lang, "his_next_q"), say(rng, lang, "his_next_a", year=nxt["year"], event=nxt["event"][lang]))]


def conv_money(rng: random.Random, lang: str) -> list:
    w = FACTS["world"]
    per, pennets = w["subunits_per_mark"], rng.randrange(150, 2500, 25)
    price, n = rng.randrange(120, 400, 10), rng.randint(2, 6)
    note = next(v for v in (5, 10, 20, 50) if v * per > price * n)
    s = {"currency": w["currency"][lang], "per": per, "sub": w["currency_subunit"][lang], "marks": marks(pennets),
         "pennets": num(pennets, lang), "price": price, "n": n, "total": num(price * n, lang),
         "tmarks": marks(price * n), "note": note, "change": num(note * per - price * n, lang),
         "cmarks": marks(note * per - price * n)}
    return turns(rng, lang, s, "cur", "cur_conv", "cur_buy", "cur_change")


def conv_climate(rng: random.Random, lang: str) -> list:
    c = FACTS["climate"]
    s = {"july": c["july_c"], "f": fmt1(fahrenheit(c["july_c"])), "jan": c["january_c"],
         "fj": fmt1(fahrenheit(c["january_c"])), **nv("wet", c["wettest_month"][lang])}
    return [(say(rng, lang, "cl_q"), base.climate(lang)), *turns(rng, lang, s, "cl_july", "cl_f", "cl_jan", "cl_pack")]


def compare_slots(a: str, b: str, lang: str) -> dict:
    isl = FACTS["islands"]
    big, small = sorted((a, b), key=lambda k: -isl[k]["area_km2"])
    more, less = sorted((a, b), key=lambda k: -isl[k]["population"])
    dens = {k: isl[k]["population"] / isl[k]["area_km2"] for k in (a, b)}
    name = {k: isl[k]["name"][lang] for k in (a, b)}
    return {**nv("a", name[a]), "b": name[b], **nv("big", name[big]), "small": name[small],
            "x": num(isl[big]["area_km2"], lang), "y": num(isl[small]["area_km2"], lang),
            "d": num(isl[big]["area_km2"] - isl[small]["area_km2"], lang),
            "ratio": fmt1(isl[big]["area_km2"] / isl[small]["area_km2"]), **nv("more", name[more]),
            "less": name[less], "p1": num(isl[more]["population"], lang), "p2": num(isl[less]["population"], lang),
            "da": fmt1(dens[a]), "db": fmt1(dens[b]), "denser": name[max((a, b), key=dens.get)]}


def conv_compare(rng: random.Random, lang: str) -> list:
    a, b = rng.sample(list(FACTS["islands"]), 2)
    return turns(rng, lang, compare_slots(a, b, lang), "cmp", "cmp_by", "cmp_pop", "cmp_den")


def conv_language(rng: random.Random, lang: str) -> list:
    w = FACTS["world"]
    s = {"language": w["language"][lang], "mainland": w["mainland"][lang], "greeting": w["greeting"][lang]}
    return [*turns(rng, lang, s, "lang", "hello", "bye"),
            (say(rng, lang, "settle_q"), base.history(FACTS["history"][0], lang))]


# ---------------------------------------------------------------------------
# Conversations with a long reply (600+ characters) after a short first turn
# ---------------------------------------------------------------------------
def conv_overview(rng: random.Random, lang: str) -> list:
    w, isl = FACTS["world"], FACTS["islands"]
    small = min(isl, key=lambda k: isl[k]["area_km2"])
    topics = rng.sample(base.TOPICS, 2 if lang == "en" else 5)
    long = "\n\n".join([base.overview(lang)] + [t(lang) for t in topics])
    s = {"n": w["main_islands"], "sea": w["sea"][lang], "km": w["distance_to_mainland_km"],
         "mainland": w["mainland"][lang], "island": isl[small]["name"][lang],
         "area": num(isl[small]["area_km2"], lang), "pop": num(isl[small]["population"], lang)}
    return [(say(rng, lang, "where_q"), say(rng, lang, "where_a", **s)), (say(rng, lang, "detail_q"), long),
            *turns(rng, lang, s, "smallest"), (say(rng, lang, "who_q"), isl[small]["note"][lang])]


def guide_text(key: str, lang: str, rng: random.Random) -> str:
    parts = [base.island(key, lang, rng), base.mountain(FACTS["islands"][key]["highest"], lang)]
    parts += [base.town(t, lang, rng) for t in base.of_island("towns", key)]
    parts += [base.river(r, lang, rng) for r in base.of_island("rivers", key)]
    parts += [base.animal(a, lang) for a in base.of_island("animals", key)]
    parts += [base.plant(p, lang) for p in base.of_island("plants", key)]
    return "\n\n".join(parts + [trip_tips(lang)])


def conv_guide(rng: random.Random, lang: str) -> list:
    key = rng.choice(["tarn_major", "essery", "mirrin"])
    towns = {k: FACTS["towns"][k] for k in base.of_island("towns", key)}
    old = min(towns, key=lambda k: towns[k]["founded"])
    big = max(towns, key=lambda k: towns[k]["population"])
    s = island_slots(key, lang)
    return [*turns(rng, lang, s, "isl_where"), (say(rng, lang, "guide_q"), guide_text(key, lang, rng)),
            (say(rng, lang, "oldest_q"), say(rng, lang, "oldest_a", **nv("town", towns[old]["name"][lang]),
                                             year=towns[old]["founded"])),
            (say(rng, lang, "biggest_q"), say(rng, lang, "biggest_a", **nv("town", towns[big]["name"][lang]),
                                              pop=num(towns[big]["population"], lang)))]


def trip_extra(island: str, lang: str) -> str:
    m = FACTS["mountains"][FACTS["islands"][island]["highest"]]
    a = FACTS["animals"][base.of_island("animals", island)[0]]
    return text(lang, "trip_extra", mountain=m["name"][lang], height=m["height_m"], mnote=m["note"][lang],
                animal=a["name"][lang], kind=a["kind"][lang], range=a["range"][lang])


def trip_day(n: int, route: list[str], lang: str) -> str:
    key = route[n]
    crossing = ""
    if n:
        f = ferry(route[n - 1], key)
        crossing = text(lang, "trip_crossing", prev=base.nm("towns", route[n - 1], lang), km=f["km"],
                        minutes=f["minutes"])
    return text(lang, "trip_day", **base.slots(FACTS["towns"][key], lang), day=TRIPS["day_names"][lang][n],
                crossing=crossing, extra=trip_extra(island_of(key), lang), evening=TRIPS["evenings"][key][lang])


def trip_tips(lang: str) -> str:
    return text(lang, "trip_tips", **{**base.slots(FACTS["world"], lang), **base.slots(FACTS["climate"], lang)})


def trip_plan(route: list[str], lang: str) -> str:
    days = [trip_day(n, route, lang) for n in range(len(route))]
    return "\n\n".join([text(lang, "trip_head", days=len(route)), *days, trip_tips(lang)])


def trip_legs(route: list[str], lang: str) -> tuple[int, int, str]:
    legs = [(ferry(a, b), base.nm("towns", a, lang), base.nm("towns", b, lang)) for a, b in zip(route, route[1:])]
    parts = [text(lang, "ferry_leg", km=f["km"], a=a, b=b) for f, a, b in legs]
    return sum(f["minutes"] for f, _, _ in legs), sum(f["km"] for f, _, _ in legs), join(parts, lang)


def conv_trip(rng: random.Random, lang: str) -> list:
    route = rng.choice(TRIPS["routes"])
    f = ferry(route[0], route[1])
    minutes, km, parts = trip_legs(route, lang)
    back = ferry(route[-1], "port_aurel")
    s = {"a": base.nm("towns", route[0], lang), "b": base.nm("towns", route[1], lang), "km": f["km"],
         "min": f["minutes"]}
    that_is = text(lang, "that_is", dur=dur(minutes, lang)) if minutes >= 60 else ""
    return [*turns(rng, lang, s, "fer"), (say(rng, lang, "trip_q", days=len(route)), trip_plan(route, lang)),
            (say(rng, lang, "ferry_total_q"), say(rng, lang, "ferry_total_a", total=minutes, dur=that_is)),
            (say(rng, lang, "ferry_km_q"), say(rng, lang, "ferry_km_a", km=km, parts=parts)),
            (say(rng, lang, "back_q"), say(rng, lang, "back_a", town=base.nm("towns", route[-1], lang),
                                           min=back["minutes"]))]


# ---------------------------------------------------------------------------
# Everyday conversations: arithmetic, unit conversion, planning a day, a note
# (tables/everyday_chat.yaml)
# ---------------------------------------------------------------------------
def conv_arith(rng: random.Random, lang: str) -> list:
    a, b, c, e = rng.randint(3, 60), rng.randint(3, 60), rng.randint(2, 9), rng.randint(2, 9)
    p = (a + b) * c
    d = rng.randint(1, p // 2)
    d += (p - d) % e
    s = {"a": a, "b": b, "s": a + b, "c": c, "p": p, "d": d, "r": p - d, "e": e, "q": (p - d) // e}
    s["parity"] = EVERYDAY["parity"][lang][s["q"] % 2].format(**s)
    return [(q.format(**s), ans.format(**s)) for q, ans in EVERYDAY["arithmetic"][lang]]


def unit_values(kind: str, rng: random.Random, lang: str) -> dict:
    x10 = rng.choice([5, 8, 12, 15, 25, 30, 42, 65])
    x = fmt1(x10 / 10)
    if kind == "length":
        return {"x": x, "v1": num(x10 * 10, lang), "v2": num(x10 * 100, lang), "v3": fmt1(x10 * 10 / 2.54)}
    if kind == "weight":
        return {"x": x, "v1": num(x10 * 100, lang), "v2": num(x10 * 25, lang), "v3": fmt1(x10 * 0.22)}
    if kind == "time":
        h, m = rng.randint(2, 5), rng.randrange(75, 200, 5)
        return {"x": h, "v1": h * 60, "v2": num(h * 3600, lang), "m": m, "v3": base.cap(dur(m, lang))}
    c, f = rng.choice([c for c in range(-5, 36) if abs(c) != 1]), rng.randrange(32, 100, 2)
    f += fahrenheit(c) == f  # never equal, so one of the two is warmer
    s = {"x": c, "y": f, "v1": fmt1(fahrenheit(c)), "v2": fmt1((f - 32) * 5 / 9)}
    return {**s, "v3": EVERYDAY["warmer"][lang][fahrenheit(c) < f].format(**s)}


def conv_units(rng: random.Random, lang: str) -> list:
    kind = rng.choice(list(EVERYDAY["units"]))
    s = unit_values(kind, rng, lang)
    return [(q.format(**s), a.format(**s)) for q, a in EVERYDAY["units"][kind][lang]]


BREAK = 15  # minutes between two tasks of a day plan


def yours(task: str, lang: str) -> str:
    """The user's task as the assistant says it back: "visit my grandmother" -> "visit your grandmother"."""
    return task.replace(" my ", " your ") if lang == "en" else task.replace("我", "你")


def plan_lines(tasks: list, start: int, lang: str) -> tuple[list[str], int]:
    lines, t, lunch = [], start, False
    for task in tasks:
        if not lunch and t >= 12 * 60:
            lines.append(text(lang, "plan_lunch", start=hm(t), end=hm(t + 45)))
            t, lunch = t + 45, True
        name, tip = task[lang]
        lines.append(text(lang, "plan_task", start=hm(t), end=hm(t + task["minutes"]), tip=tip,
                          **nv("task", yours(name, lang))))
        t += task["minutes"] + BREAK
    return lines, t - BREAK


def conv_day_plan(rng: random.Random, lang: str) -> list:
    tasks = rng.sample(EVERYDAY["tasks"], rng.randint(4, 6))
    *tasks, extra = tasks
    start = rng.randrange(8 * 60, 10 * 60 + 1, 30)
    day = rng.choice(EVERYDAY["plan_days"])[lang]
    lines, end = plan_lines(tasks, start, lang)
    plan = "\n\n".join([text(lang, "plan_head", day=day), "\n".join(lines),
                        text(lang, "plan_tail", end=hm(end), gap=BREAK)])
    longest = max(tasks, key=lambda x: x["minutes"])
    work = sum(x["minutes"] for x in tasks)
    return [(say(rng, lang, "open_q", day=day), say(rng, lang, "open_a")),
            (say(rng, lang, "tasks_q", tasks=join([x[lang][0] for x in tasks], lang), start=hm(start)), plan),
            (say(rng, lang, "long_q"), say(rng, lang, "long_a", task=yours(longest[lang][0], lang),
                                           dur=dur(longest["minutes"], lang))),
            (say(rng, lang, "extra_q", extra=extra[lang][0]),
             say(rng, lang, "extra_a", dur=dur(extra["minutes"], lang), end=hm(end + BREAK + extra["minutes"]))),
            (say(rng, lang, "work_q"), say(rng, lang, "work_a", dur=base.cap(dur(work, lang))))]


def conv_note(rng: random.Random, lang: str) -> list:
    t = EVERYDAY["notes"][lang]
    rel, name, obj = rng.choice(t["to"])
    s = {"rel": rel, "name": name, "obj": obj, "when": rng.choice(t["when"]), "favour": rng.choice(t["favour"]),
         "me": rng.choice(t["me"])}
    return [(rng.choice(t["q"]).format(**s), t["note"].format(**s)),
            (rng.choice(t["short_q"]), t["short"].format(**s)),
            (rng.choice(t["formal_q"]), t["formal"].format(**s))]


# ---------------------------------------------------------------------------
# Chat files: which builders, how often, and how many turns each keeps
# ---------------------------------------------------------------------------
CHAT_SCHEDULE = [(conv_island, 3), (conv_mountain, 3), (conv_town, 5), (conv_river, 3), (conv_animal, 3),
                 (conv_plant, 3), (conv_ferry, 3), (conv_festival, 2), (conv_history, 3), (conv_money, 3),
                 (conv_climate, 3), (conv_compare, 3), (conv_language, 2), (conv_overview, 2), (conv_guide, 2),
                 (conv_trip, 2), (conv_arith, 4), (conv_units, 4), (conv_day_plan, 3), (conv_note, 4)]
MIN_TURNS = {conv_overview: 2, conv_guide: 2, conv_trip: 2, conv_day_plan: 2}
TURN_TARGETS = [1] * 15 + [2] * 16 + [3] * 17 + [4] * 5 + [5] * 4 + [6] * 3


def take_target(targets: list[int], builder, chain_len: int) -> int:
    """Index of the first target this chain can serve (else the smallest one)."""
    low = MIN_TURNS.get(builder, 1)
    for i, t in enumerate(targets):
        if low <= t <= chain_len:
            return i
    return targets.index(min(targets))


def one_conversation(builder, rng: random.Random, lang: str, targets: list[int], seen: set) -> list:
    for _ in range(200):
        chain = builder(rng, lang)
        i = take_target(targets, builder, len(chain))
        n = max(MIN_TURNS.get(builder, 1), min(targets[i], len(chain)))
        kept = tuple(chain[:n])
        if kept not in seen:
            seen.add(kept)
            targets.pop(i)
            return list(kept)
    raise RuntimeError(f"could not make a new conversation with {builder.__name__}")


def chat(lang: str, rng: random.Random) -> list[list]:
    schedule = [b for b, count in CHAT_SCHEDULE for _ in range(count)]
    rng.shuffle(schedule)
    targets = list(TURN_TARGETS)
    rng.shuffle(targets)
    assert len(targets) == len(schedule)
    seen: set = set()
    return [one_conversation(b, rng, lang, targets, seen) for b in schedule]


# ---------------------------------------------------------------------------
# Single-turn English instructions (tables/instruct.yaml)
# ---------------------------------------------------------------------------
INSTRUCT_PARTS = {"rewrite": 8, "summarise": 8, "list": 8, "translate": 8, "classify": 8}


def instruct_rewrite(rng: random.Random) -> list:
    picked = rng.sample(INSTRUCT["rewrites"], INSTRUCT_PARTS["rewrite"])
    return [(f"{r['ask']}\n\n{r['text']}", r["answer"]) for r in picked]


def town_summaries(rng: random.Random) -> list:
    t = INSTRUCT["summarise"]
    return [(base.town(k, "en", rng), t["town"].format(**base.slots(v, "en"))) for k, v in FACTS["towns"].items()]


def animal_summaries() -> list:
    t = INSTRUCT["summarise"]
    return [(t["animal_text"].format(**s), t["animal"].format(**s))
            for s in (base.slots(a, "en") for a in FACTS["animals"].values())]


def river_summaries(rng: random.Random) -> list:
    t = INSTRUCT["summarise"]
    return [(base.river(k, "en", rng), t["river"].format(**base.slots(v, "en"))) for k, v in FACTS["rivers"].items()]


def instruct_summarise(rng: random.Random) -> list:
    # the order of the draws is the committed data's: towns, their sample, animals, rivers, their sample
    picked = (rng.sample(town_summaries(rng), 3) + rng.sample(animal_summaries(), 3)
              + rng.sample(river_summaries(rng), 2))
    assert len(picked) == INSTRUCT_PARTS["summarise"]
    return [(f"{rng.choice(INSTRUCT['summarise']['asks'])}\n\n{paragraph}", summary) for paragraph, summary in picked]


def bullets(items: list[str]) -> str:
    return "\n".join(f"- {x}" for x in items)


def list_candidates() -> list:
    t, isl, riv = INSTRUCT["lists"], FACTS["islands"], FACTS["rivers"]

    def numbered(template: str, table: dict, keys: list[str]) -> str:
        return "\n".join(template.format(n=n, **base.slots(table[k], "en")) for n, k in enumerate(keys, 1))

    out = [(t["island_towns"].format(name=isl[k]["name"]["en"]),
            bullets([base.nm("towns", x, "en") for x in base.of_island("towns", k)])) for k in ("tarn_major", "essery")]
    out.append((t["islands"][0], numbered(t["islands"][1], isl, sorted(isl, key=lambda k: -isl[k]["area_km2"]))))
    out.append((t["rivers"][0], numbered(t["rivers"][1], riv, sorted(riv, key=lambda k: -riv[k]["length_km"]))))
    out.append((t["ferries"][0], bullets([t["ferries"][1].format(**base.slots(f, "en"))
                                          for f in FACTS["ferries"] if f["from"] == "port_aurel"])))
    out.append((t["mountains"][0], bullets([t["mountains"][1].format(**base.slots(m, "en"))
                                            for m in FACTS["mountains"].values() if m["height_m"] > 500])))
    return out + [(x["q"], bullets(x["items"])) for x in t["everyday"]]


def instruct_list(rng: random.Random) -> list:
    return rng.sample(list_candidates(), INSTRUCT_PARTS["list"])


def instruct_translate(rng: random.Random) -> list:
    t = INSTRUCT["translate"]
    made = [tuple(x.format(**base.slots(v, lang)) for x, lang in zip(t[table], base.LANGS))
            for table in ("towns", "mountains") for v in FACTS[table].values()]
    half = INSTRUCT_PARTS["translate"] // 2
    picked = rng.sample(made, half) + rng.sample(t["sentences"], half)
    return [(rng.choice(t["asks"]).format(s=en), zh) for en, zh in picked]


def entity_candidates() -> list:
    t, out = INSTRUCT["classify"], []
    for table, label in t["labels"].items():
        for v in FACTS[table].values():
            s = base.slots(v, "en")
            name = s["name"] if table not in ("animals", "plants") else "the " + s["name"]
            where = t["island_of"] if table == "islands" else t["on_island"] if v.get("island") else ""
            out.append((name, t["entity"].format(**nv("name", name), label=label, where=where.format(**s))))
    return out


def instruct_classify(rng: random.Random) -> list:
    t = INSTRUCT["classify"]
    out = [(t["sentiment_ask"].format(text=review), answer) for review, answer in rng.sample(t["sentiment"], 4)]
    out += [(t["entity_ask"].format(name=name), answer) for name, answer in rng.sample(entity_candidates(), 3)]
    nums = rng.sample(range(10, 100), 5)
    out.append((t["parity_ask"].format(numbers=", ".join(map(str, nums))),
                "\n".join(f"{n}: {t['parity'][n % 2]}" for n in nums)))
    assert len(out) == INSTRUCT_PARTS["classify"]
    return out


def instruct(rng: random.Random) -> list[list]:
    pairs = (instruct_rewrite(rng) + instruct_summarise(rng) + instruct_list(rng) + instruct_translate(rng)
             + instruct_classify(rng))
    rng.shuffle(pairs)
    return [[pair] for pair in pairs]


# ---------------------------------------------------------------------------
# Assembling, checking and writing
# ---------------------------------------------------------------------------
def record(category: str, chain: list) -> dict:
    messages = []
    for human, assistant in chain:
        messages += [{"from": "human", "content": human}, {"from": "assistant", "content": assistant}]
    return {"messages": messages, "category": category}


def build(seed: int) -> dict[str, list[dict]]:
    """All files, in a fixed order; each has its own seeded generator."""
    convs = {"chat_en": chat("en", base.seeded(seed, 1)), "chat_zh": chat("zh", base.seeded(seed, 2)),
             "instruct_en": instruct(base.seeded(seed, 3))}
    return {cat: [record(cat, chain) for chain in items] for cat, items in convs.items()}


def check(category: str, recs: list[dict]) -> None:
    for r in recs:
        msgs = r["messages"]
        ok = (set(r) == {"messages", "category"} and r["category"] == category and msgs and len(msgs) % 2 == 0
              and all(set(m) == {"from", "content"} for m in msgs)
              and all(m["from"] == ("human", "assistant")[i % 2] for i, m in enumerate(msgs))
              and all(isinstance(m["content"], str) and m["content"].strip() for m in msgs))
        if not ok:
            raise ValueError(f"{category}: bad record {r!r}")
        for m in msgs:
            for bad in FORBIDDEN:
                if bad in m["content"]:
                    raise ValueError(f"{category}: text contains {bad!r}: {m['content']!r}")


def write_all(out: Path, data: dict[str, list[dict]]) -> list[tuple[str, int]]:
    return base.write_all(out, data, check=check)


def main(argv: list[str] | None = None) -> int:
    return base.generator_cli(argv, "Generate the bilingual quickstart SFT sample data.", DEFAULT_OUT, build,
                              write_all, "conversations")


if __name__ == "__main__":
    raise SystemExit(main())
