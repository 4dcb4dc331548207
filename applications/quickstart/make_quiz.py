"""The quickstart's multiple-choice quiz about the invented Calvessa Islands, in English and Chinese.

    python applications/quickstart/make_sample_data.py     # writes data/quiz/ with the rest of the sample data

The quiz asks the questions of `tables/questions.yaml` (`world_qa`) that the
training Q&A (qa_en, qa_zh) leaves out in *both* languages, so the two files
ask the same facts and no question or answer of it is ever trained on (the
facts themselves are stated in the encyclopedia, as for the probes). Each
question has four choices: its short answer (`tables/quiz.yaml`) and three wrong
ones, the same answer of other entries of the fact table (other towns, other
years, other islands), so that every choice is a plausible one:

    {"question": "When was Windle founded?", "choices": ["1744", "1701", "1512", "1603"], "answer": "C",
     "subject": "towns"}

The English and Chinese files are parallel: the same facts, the same wrong
choices, the right one at the same letter. The draws come from the quiz's own
seeded generator (`QUIZ_STREAM`), so the quiz does not shift the other files.
"""

from __future__ import annotations

from pathlib import Path

import make_sample_data as base

QUIZ = base.load_table("quiz")
QUIZ_STREAM = 20  # the i of base.seeded: make_sample_data uses 1-10, make_sample_sft_data 1-3 (of its own build)
LETTERS = "ABCD"

for _table, _templates in base.QUESTIONS["world_qa"].items():
    assert len(QUIZ[_table]) == len(_templates), f"tables/quiz.yaml: {_table} needs one entry per question"


def entries(table: str, lang: str) -> list[dict]:
    """The slots of each entry of a fact table, as `world_qa` fills its templates."""
    if table == "world":
        return [base.world_slots(lang)]
    value = base.FACTS[table]
    items = value if isinstance(value, list) else [value] if table == "festival" else value.values()
    return [base.slots(v, lang) for v in items]


def world_questions() -> list[tuple[str, int, int]]:
    """(table, question index, entry index) of every question of `world_qa`, in the order it lists them."""
    return [(table, t, e) for table, templates in base.QUESTIONS["world_qa"].items()
            for e in range(len(entries(table, "en"))) for t in range(len(templates))]


def answer(template: dict | str, entry: dict, lang: str) -> str:
    text = (template[lang] if isinstance(template, dict) else template).format(**entry)
    return base.cap(text) if lang == "en" else text


def wrong_answers(spec: dict, table: str, e: int) -> list[int]:
    """Entries of the pool whose answer differs from the right one in both languages, one per distinct answer."""
    pool = spec.get("pool") or {"table": table, "answer": spec["answer"]}
    right = {lang: answer(spec["answer"], entries(table, lang)[e], lang) for lang in base.LANGS}
    seen, out = set(), []
    for k in range(len(entries(pool["table"], "en"))):
        texts = tuple(answer(pool["answer"], entries(pool["table"], lang)[k], lang) for lang in base.LANGS)
        if texts not in seen and all(t != right[lang] for t, lang in zip(texts, base.LANGS)):
            seen.add(texts)
            out.append(k)
    return out


def quiz(seed: int) -> dict[str, list[dict]]:
    """quiz_en and quiz_zh: {question, choices, answer (a letter), subject (the fact table)} records."""
    data = base.build(seed)
    asked = {lang: {r["source"] for r in data[f"qa_{lang}"]} for lang in base.LANGS}
    questions = {lang: base.world_qa(lang) for lang in base.LANGS}
    rng = base.seeded(seed, QUIZ_STREAM)
    out: dict[str, list[dict]] = {f"quiz_{lang}": [] for lang in base.LANGS}
    for i, (table, t, e) in enumerate(world_questions()):
        spec = QUIZ[table][t]
        if spec is None or any(questions[lang][i][0] in asked[lang] for lang in base.LANGS):
            continue
        pool = spec.get("pool") or {"table": table, "answer": spec["answer"]}
        wrong = rng.sample(wrong_answers(spec, table, e), 3)
        position = rng.randrange(4)
        for lang in base.LANGS:
            choices = [answer(pool["answer"], entries(pool["table"], lang)[k], lang) for k in wrong]
            choices.insert(position, answer(spec["answer"], entries(table, lang)[e], lang))
            out[f"quiz_{lang}"].append({"question": questions[lang][i][0], "choices": choices,
                                        "answer": LETTERS[position], "subject": table})
    return out


def check(category: str, records: list[dict]) -> None:
    for r in records:
        if len(set(r["choices"])) != 4 or r["answer"] not in LETTERS:
            raise ValueError(f"{category}: bad question {r!r}")
        for bad in base.FORBIDDEN:
            if any(bad in text for text in [r["question"], *r["choices"]]):
                raise ValueError(f"{category}: text contains {bad!r}: {r!r}")


def write_quiz(out: Path, seed: int) -> list[tuple[str, int]]:
    """quiz_en.jsonl and quiz_zh.jsonl in `out`; returns (file name, questions) of each."""
    return base.write_all(out, quiz(seed), check=check)
