"""Generate the small bilingual (English / Simplified Chinese) quickstart pretraining corpus.

Every text is produced here from hand-written templates and slot fillers; nothing
is copied from books, websites or datasets. The encyclopedia and question/answer
records describe an invented world, the Calvessa Islands (卡尔维萨群岛), so that no
real model can already know the facts; both languages are rendered from the one
fact table `tables/facts.yaml`, so the English and Chinese facts agree.

The texts live in YAML tables beside this script (`tables/facts.yaml`,
`encyclopedia.yaml`, `stories.yaml`, `questions.yaml`); this file holds only the
slot logic that picks and fills them. `make_sample_sft_data.py` imports it for
the fact table and the encyclopedia paragraphs.

Files written to `data/pretrain/` next to this script (JSON Lines, UTF-8, one
object per line with exactly the keys `source`, `target`, `category`; `source`
is context that is not trained on, `target` is trained on):

    encyclopedia_en.jsonl  encyclopedia_zh.jsonl   paragraphs about the islands
    story_en.jsonl.gz      story_zh.jsonl          everyday stories (English file gzipped)
    qa_en.jsonl            qa_zh.jsonl             question -> answer
    riddle_zh.jsonl                                Chinese riddle -> answer

and the held-out knowledge probes to `data/probes/` (the island questions the qa
files leave out), and the multiple-choice quiz to `data/quiz/` (`make_quiz.py`:
those of them left out in both languages, with wrong choices from the fact table).

Run it from the repository root:

    python applications/quickstart/make_sample_data.py            # default: --seed 0
    python applications/quickstart/make_sample_data.py --out /tmp/sample

The output is committed to the repository. Generation uses only
`random.Random(seed)` and ordered data, and the gzip file is written with
mtime=0 and no file name, so regenerating with the same seed must give
byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data" / "pretrain"
FORBIDDEN = ("<s>", "</s>", "<unk>", "<|")
LANGS = ("en", "zh")


def load_table(name: str):
    """The YAML table `tables/<name>.yaml` beside this script."""
    with open(HERE / "tables" / f"{name}.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


FACTS = load_table("facts")
ENCYCLOPEDIA = load_table("encyclopedia")
STORIES = load_table("stories")
QUESTIONS = load_table("questions")

assert FACTS["world"]["total_area_km2"] == sum(i["area_km2"] for i in FACTS["islands"].values())
assert FACTS["world"]["population"] == sum(i["population"] for i in FACTS["islands"].values())
assert FACTS["world"]["main_islands"] == len(FACTS["islands"])


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
def nm(table: str, key: str, lang: str) -> str:
    """The name of entry `key` of FACTS[table] in `lang`."""
    return FACTS[table][key]["name"][lang]


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def num(n: int, lang: str) -> str:
    return f"{n:,}" if lang == "en" else str(n)


def en_list(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def zh_list(items: list[str]) -> str:
    if len(items) <= 2:
        return "和".join(items)
    return "、".join(items[:-1]) + "和" + items[-1]


def join(items: list[str], lang: str) -> str:
    """The items as one phrase: "a, b and c" in English, "a、b和c" in Chinese."""
    return en_list(items) if lang == "en" else zh_list(items)


def pick(rng: random.Random, options: list[str] | str) -> str:
    """One of a table's `options` at random; a plain string is the only option and draws nothing from `rng`."""
    return options if isinstance(options, str) else rng.choice(options)


def either(rng: random.Random, wordings: list[str]) -> str:
    """The first of a paragraph's two wordings half of the time, else the second."""
    return wordings[0] if rng.random() < 0.5 else wordings[1]


def of_island(table: str, island: str) -> list[str]:
    """Ids of the entries of FACTS[table] that lie on `island`, in table order."""
    return [k for k, v in FACTS[table].items() if v.get("island") == island]


def size_rank(island: str) -> int:
    order = sorted(FACTS["islands"], key=lambda k: -FACTS["islands"][k]["area_km2"])
    return order.index(island)


# Fields that hold the id of an entry of another table: a template gets that entry's name.
LINKS = {"island": "islands", "highest": "mountains", "highest_point": "mountains", "source": "mountains",
         "capital": "towns", "town": "towns", "race_from": "towns", "race_to": "towns", "from": "towns", "to": "towns"}


def slots(entry: dict, lang: str) -> dict:
    """A FACTS entry as template slots in `lang`.

    A text {"en": ..., "zh": ...} becomes its `lang` side, an id in a LINKS field
    becomes the linked entry's name; each such text is also given capitalised under
    the capitalised key ({name} -> {Name}). {world} is the archipelago's name.
    """
    out = {"world": FACTS["world"]["name"][lang], "World": cap(FACTS["world"]["name"][lang])}
    for key, value in entry.items():
        if isinstance(value, dict) and lang in value:
            value = value[lang]
        elif key in LINKS and isinstance(value, str):
            value = nm(LINKS[key], value, lang)
        else:
            out[key] = value
            continue
        out[key], out[key.capitalize()] = value, cap(value)
    return out


def world_slots(lang: str) -> dict:
    w = FACTS["world"]
    return {**slots(w, lang), "capital_island": nm("islands", FACTS["towns"][w["capital"]]["island"], lang),
            "height": FACTS["mountains"][w["highest_point"]]["height_m"]}


def festival_slots(lang: str) -> dict:
    f = FACTS["festival"]
    return {**slots(f, lang), "race_island": nm("islands", FACTS["towns"][f["race_to"]]["island"], lang)}


# ---------------------------------------------------------------------------
# Encyclopedia paragraphs (templates: tables/encyclopedia.yaml)
# ---------------------------------------------------------------------------
E = ENCYCLOPEDIA


def overview(lang: str) -> str:
    return E["overview"][lang].format(**world_slots(lang))


def island(key: str, lang: str, rng: random.Random) -> str:
    i = FACTS["islands"][key]
    towns = [nm("towns", t, lang) for t in of_island("towns", key)]
    which = "many" if len(towns) > 1 else "one" if towns else "none"
    text = either(rng, E["island_head"][lang]) + E["island_body"][lang] + E[f"island_towns_{which}"][lang]
    return text.format(**slots(i, lang), rank=E["size_rank"][lang][size_rank(key)], towns=join(towns, lang),
                       main_islands=FACTS["world"]["main_islands"], height=FACTS["mountains"][i["highest"]]["height_m"])


def town(key: str, lang: str, rng: random.Random) -> str:
    text = either(rng, E["town"][lang])
    if key == FACTS["world"]["capital"]:
        text += E["town_capital"][lang]
    text = text.format(**slots(FACTS["towns"][key], lang))
    links = [f for f in FACTS["ferries"] if key in (f["from"], f["to"])]
    for n, f in enumerate(links):
        other = nm("towns", f["to"] if f["from"] == key else f["from"], lang)
        text += E["town_ferry"][lang][min(n, 1)].format(other=other, km=f["km"], minutes=f["minutes"])
    return text


def mountain(key: str, lang: str) -> str:
    return E["mountain"][lang].format(**slots(FACTS["mountains"][key], lang))


def river(key: str, lang: str, rng: random.Random) -> str:
    return either(rng, E["river"][lang]).format(**slots(FACTS["rivers"][key], lang))


def animal(key: str, lang: str) -> str:
    a = FACTS["animals"][key]
    return (E["animal"][lang] + (E["animal_estimate"][lang] if a["estimate"] else "")).format(**slots(a, lang))


def plant(key: str, lang: str) -> str:
    return E["plant"][lang].format(**slots(FACTS["plants"][key], lang))


def festival(lang: str) -> str:
    return E["festival"][lang].format(**festival_slots(lang))


def race(lang: str) -> str:
    return E["race"][lang].format(**festival_slots(lang))


def history(event: dict, lang: str) -> str:
    return E["history"][lang].format(**slots(event, lang))


def climate(lang: str) -> str:
    return E["climate"][lang].format(**slots(FACTS["climate"], lang))


def economy(lang: str) -> str:
    return E["economy"][lang].format(**slots(FACTS["economy"], lang))


def language(lang: str) -> str:
    return E["language"][lang].format(**world_slots(lang))


def transport(lang: str) -> str:
    routes = [E["transport_route"][lang].format(**slots(f, lang)) for f in FACTS["ferries"]]
    # The Chinese routes are one enumeration (、), without the final 和 of zh_list.
    routes = en_list(routes) if lang == "en" else "、".join(routes)
    return E["transport"][lang].format(**world_slots(lang), routes=routes)


def cuisine(lang: str) -> str:
    return E["cuisine"][lang]


def council(lang: str) -> str:
    return E["council"][lang]


TOPICS = [climate, economy, language, transport, cuisine, council]


def island_article(key: str, lang: str, rng: random.Random) -> str:
    """A long article: the island, its mountain, towns, rivers, wildlife and history."""
    h = E["headings"][lang]
    parts = [nm("islands", key, lang), island(key, lang, rng), mountain(FACTS["islands"][key]["highest"], lang)]
    towns = [town(t, lang, rng) for t in of_island("towns", key)]
    rivers = [river(r, lang, rng) for r in of_island("rivers", key)]
    nature = [animal(a, lang) for a in of_island("animals", key)] + [plant(p, lang) for p in of_island("plants", key)]
    events = [history(e, lang) for e in FACTS["history"] if nm("islands", key, lang) in e["event"][lang]
              or any(nm("towns", t, lang) in e["event"][lang] for t in of_island("towns", key))]
    for title, section in (("towns", towns), ("rivers", rivers), ("nature", nature), ("history", events)):
        if section:
            parts += [h[title]] + section
    return "\n\n".join(parts)


PARAGRAPHS = {"islands": island, "mountains": mountain, "towns": town, "rivers": river, "animals": animal,
              "plants": plant}
TWO_WORDINGS = ("islands", "towns", "rivers")  # their paragraphs draw a wording from the generator


def every(table: str, lang: str, rng: random.Random) -> list[str]:
    """The paragraph of every entry of FACTS[table], in table order."""
    paragraph = PARAGRAPHS[table]
    return [paragraph(k, lang, rng) if table in TWO_WORDINGS else paragraph(k, lang) for k in FACTS[table]]


def encyclopedia(lang: str, rng: random.Random) -> list[str]:
    h = E["headings"][lang]
    events = [history(e, lang) for e in FACTS["history"]]
    texts = [overview(lang)] + [p for table in PARAGRAPHS for p in every(table, lang, rng)]
    texts += [festival(lang), race(lang)] + events + [topic(lang) for topic in TOPICS]
    # Long articles (several thousand characters) that need splitting at 512 tokens.
    texts += [island_article(k, lang, rng) for k in ("tarn_major", "essery", "mirrin", "little_tarn")]
    history_article = [h["history_title"], *events, festival(lang), race(lang), council(lang), language(lang)]
    texts.append("\n\n".join(history_article + every("towns", lang, rng)))
    nature = [h["wildlife_title"], climate(lang)]
    for table in ("islands", "mountains", "rivers", "animals", "plants"):
        nature += every(table, lang, rng)
    texts.append("\n\n".join(nature))
    world = [h["world_title"], overview(lang), *(t(lang) for t in TOPICS), festival(lang), race(lang)]
    texts.append("\n\n".join(world + every("islands", lang, rng) + every("towns", lang, rng)))
    return texts


# ---------------------------------------------------------------------------
# Stories (tables/stories.yaml)
# ---------------------------------------------------------------------------
def story_slots(rng: random.Random, t: dict) -> dict:
    name, gender = rng.choice(t["people"])
    return {"name": name, **t["pronouns"][gender], "day": rng.choice(t["days"]), "part": rng.choice(t["parts"]),
            "weather": rng.choice(list(t["weather"])), "food": rng.choice(t["foods"]), "dish": rng.choice(t["dishes"]),
            "fruit": rng.choice(t["fruits"]), "friend": rng.choice(t["friends"]),
            "place": rng.choice(list(t["scenes"]))}


def scene_paragraph(rng: random.Random, t: dict, s: dict, place: str, first: bool) -> str:
    sentences = [rng.choice(t["openings"] if first else t["later"]).format(**{**s, "place": place})]
    if first:
        sentences.append(t["weather"][s["weather"]].format(**s))
    sentences += [x.format(**s) for x in rng.sample(t["scenes"][place], rng.randint(2, 3))]
    return cap(t["joiner"].join(sentences))


def story(rng: random.Random, lang: str) -> str:
    t = STORIES[lang]
    s = story_slots(rng, t)
    shape = rng.choice(["line", "short", "short", "medium", "long"])
    if shape == "line":
        return cap(rng.choice(t["one_liners"]).format(**s))
    if shape in ("medium", "long"):
        s["part"] = t["lunch_part"]  # these stories go on to lunch
    paragraphs = [scene_paragraph(rng, t, s, s["place"], first=True)]
    if shape in ("medium", "long"):
        paragraphs.append(pick(rng, t["lunch"]).format(**s))
    if shape == "long":
        other = rng.choice([p for p in t["scenes"] if p != s["place"]])
        paragraphs.append(scene_paragraph(rng, t, s, other, first=False))
    paragraphs.append(rng.choice(t["closings"]).format(**s))
    return (t["joiner"] if shape == "short" else "\n\n").join(paragraphs)


# ---------------------------------------------------------------------------
# Questions and answers (tables/questions.yaml)
# ---------------------------------------------------------------------------
def fill(pair: list[str], **s) -> tuple[str, str]:
    """A [question, answer] template pair, filled."""
    return pair[0].format(**s), pair[1].format(**s)


def world_qa(lang: str) -> list[tuple[str, str]]:
    """Every question about the islands, table by table in the order of world_qa."""
    qa = []
    for table, templates in QUESTIONS["world_qa"].items():
        if table == "world":
            entries = [world_slots(lang)]
        else:
            value = FACTS[table]
            items = value if isinstance(value, list) else [value] if table == "festival" else value.values()
            entries = [slots(v, lang) for v in items]
        qa += [fill(t[lang], **s) for s in entries for t in templates]
    return qa


def everyday_qa(rng: random.Random, lang: str) -> list[tuple[str, str]]:
    t, qa = QUESTIONS["everyday"], []
    for op in t["arithmetic"]:
        for _ in range(op["count"]):
            a, b = rng.randint(*op["a"]), rng.randint(*op["b"])
            qa.append(fill(op[lang], a=a, b=b, sum=a + b, product=a * b, difference=a - b))
    days = STORIES[lang]["days"]
    qa += [fill(t["next_day"][lang], day=d, next=days[(i + 1) % 7]) for i, d in enumerate(days)]
    qa += [fill(t["colour_mix"][lang], a=a, b=b, mix=mix) for a, b, mix in (c[lang] for c in t["colour_mixes"])]
    qa += [fill(t["unit"][lang], big=u[lang][0], small=u[lang][1], n=u["n"]) for u in t["units"]]
    return qa


def pick_qa(rng: random.Random, world: list, everyday: list, n_world: int, n_everyday: int) -> list:
    """A deterministic sample without duplicate questions, world questions first, order shuffled."""
    chosen, seen = [], set()
    for pool, n in ((world, n_world), (everyday, n_everyday)):
        for q, a in rng.sample(pool, len(pool)):
            if n and q not in seen:
                seen.add(q)
                chosen.append((q, a))
                n -= 1
    rng.shuffle(chosen)
    return chosen


def riddles(rng: random.Random) -> list[tuple[str, str]]:
    t = QUESTIONS["riddles"]
    out = [(t["riddle"].format(prefix=rng.choice(t["prefixes"]), text=text, kind=kind), answer)
           for text, kind, answer in t["items"]]
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------
# Assembling and writing (shared with make_sample_sft_data.py)
# ---------------------------------------------------------------------------
def unique_texts(make, rng: random.Random, n: int) -> list[str]:
    """`n` distinct texts from `make(rng)`, in generation order."""
    out, seen = [], set()
    for _ in range(n * 50):
        text = make(rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
            if len(out) == n:
                return out
    raise RuntimeError(f"could not generate {n} distinct texts")


def records(category: str, pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"source": s, "target": t, "category": category} for s, t in pairs]


def seeded(seed: int, i: int) -> random.Random:
    """The generator of the i-th file of a build: each file has its own, so files do not shift each other."""
    return random.Random(seed * 1000 + i)


def build(seed: int) -> dict[str, list[dict]]:
    """All categories, in a fixed order; each category has its own seeded generator (the i of `seeded`)."""
    def texts(items: list[str]) -> list[tuple[str, str]]:
        return [("", t) for t in items]

    def stories(lang: str, i: int) -> list[tuple[str, str]]:
        return texts(unique_texts(lambda rng: story(rng, lang), seeded(seed, i), 50))

    def qa(lang: str, i: int) -> list[tuple[str, str]]:  # 28 island and 22 everyday questions
        return pick_qa(seeded(seed, i), world_qa(lang), everyday_qa(seeded(seed, i + 1), lang), 28, 22)

    pairs = {"encyclopedia_en": texts(encyclopedia("en", seeded(seed, 1))),
             "encyclopedia_zh": texts(encyclopedia("zh", seeded(seed, 2))),
             "story_en": stories("en", 3), "story_zh": stories("zh", 4), "qa_en": qa("en", 5), "qa_zh": qa("zh", 7),
             "riddle_zh": riddles(seeded(seed, 9))}
    return {category: records(category, p) for category, p in pairs.items()}


def check(category: str, recs: list[dict]) -> None:
    for r in recs:
        if set(r) != {"source", "target", "category"} or not r["target"].strip():
            raise ValueError(f"{category}: bad record {r!r}")
        for bad in FORBIDDEN:
            if bad in r["source"] or bad in r["target"]:
                raise ValueError(f"{category}: text contains {bad!r}: {r!r}")


def to_jsonl(recs: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


GZIPPED = ("story_en",)


def write_all(out: Path, data: dict[str, list[dict]], check=check) -> list[tuple[str, int]]:
    """Check every category with `check`, then write one JSON Lines file each (gzipped for GZIPPED)."""
    for category, recs in data.items():  # check everything before writing anything
        check(category, recs)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for category, recs in data.items():
        name, payload = f"{category}.jsonl", to_jsonl(recs)
        if category in GZIPPED:
            name, payload = name + ".gz", gzip_bytes(payload)
        (out / name).write_bytes(payload)
        written.append((name, len(recs)))
    return written


def generator_cli(argv, description: str, default_out: Path, build_data, write_data, unit: str, also=None) -> int:
    """The command line shared by the sample-data generators: --out, --seed, a count per file.

    `also(out, seed)`, when given, writes more files after the main ones.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out, help=f"output folder (default: {default_out})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    written = write_data(args.out, build_data(args.seed))
    for name, count in written:
        print(f"{count:4d}  {args.out / name}")
    print(f"{sum(c for _, c in written):4d}  {unit} in total")
    if also is not None:
        also(args.out, args.seed)
    return 0


def held_out(seed: int) -> dict[str, list[dict]]:
    """Questions about the islands that the qa files leave out: the demo's knowledge probes.

    Every fact they ask about is stated in the encyclopedia files; the question
    itself is never trained on. Categories fact_en and fact_zh.
    """
    data = build(seed)
    out = {}
    for lang in LANGS:
        asked = {r["source"] for r in data[f"qa_{lang}"]}
        out[f"facts_{lang}"] = records(f"fact_{lang}", [(q, a) for q, a in world_qa(lang) if q not in asked])
    return out


def main(argv: list[str] | None = None) -> int:
    def held_out_files(out: Path, seed: int) -> None:
        from make_quiz import write_quiz  # it imports this module: Python finds it beside this script

        for name, count in write_all(out.parent / "probes", held_out(seed)):
            print(f"{count:4d}  {out.parent / 'probes' / name}  (held-out knowledge probes)")
        for name, count in write_quiz(out.parent / "quiz", seed):
            print(f"{count:4d}  {out.parent / 'quiz' / name}  (held-out multiple-choice quiz)")

    return generator_cli(argv, "Generate the bilingual quickstart pretraining sample data.", DEFAULT_OUT, build,
                         write_all, "records", also=held_out_files)


if __name__ == "__main__":
    raise SystemExit(main())
