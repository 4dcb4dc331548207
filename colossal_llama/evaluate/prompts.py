"""Prompts and continuations of a question, and their token ids: what the scorer runs.

The prompt text is the same for a base and a chat model (MMLU's layout):

    The following are multiple choice questions (with answers) about college biology.

    <dev question 1>
    A. <choice>
    B. <choice>
    Answer: B

    <the question>
    A. <choice>
    B. <choice>
    Answer:

A base model reads it as it is (with BOS, as the tokenizer adds it); a chat
model (`chat`: the tokenizer has a chat_template) reads it as one user turn,
`apply_chat_template([user], add_generation_prompt=True)`, so the text inside
the turn is exactly the base prompt. Each choice has two continuations, scored
after that context: its text (`acc`, `acc_norm`) and its letter
(`acc_letter`). After "Answer:" in plain text they start with a space (" B",
" <choice text>"); in a chat turn the template's own separator opens the
reply, so they are the bare "B" and "<choice text>".

Token boundary (lm-eval's rule): the context and context + continuation are
each tokenized as one text; the model reads the full text's ids and the scored
tokens are those after the context's ids. Where the full text's ids do not
start with the context's ids (a token merged across the boundary), the scored
tokens are those after the longest common prefix of the two, and that choice
keeps its own context (`Encoded.contexts`) instead of sharing the question's:
the ids the model reads are always the tokenizer's own ids of the full text.
"""

from __future__ import annotations

from dataclasses import dataclass

from colossal_llama.errors import InferenceError
from colossal_llama.evaluate.tasks import LETTERS, Question

HEADER = "The following are multiple choice questions (with answers) about {}.\n\n"


def format_example(question: Question, with_answer: bool) -> str:
    """The question, its lettered choices and "Answer:" (followed by the letter for a dev example)."""
    lines = [question.question] + [f"{letter}. {choice}" for letter, choice in zip(LETTERS, question.choices)]
    answer = f"Answer: {question.answer_letter}\n\n" if with_answer else "Answer:"
    return "\n".join(lines) + "\n" + answer


def render_prompt(question: Question, shots: int) -> str:
    """The plain-text prompt: subject header, up to `shots` dev examples with answers, the question."""
    examples = question.dev[:shots]
    return (HEADER.format(question.subject.replace("_", " ")) + "".join(format_example(e, True) for e in examples)
            + format_example(question, False))


def context_text(tokenizer, prompt: str, chat: bool) -> str:
    """The text the model reads before a continuation: the prompt, or the prompt as one chat user turn."""
    if not chat:
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)


def continuations(question: Question, chat: bool) -> list[str]:
    """The scored continuations: each choice's text, then each choice's letter."""
    space = "" if chat else " "
    return ([space + choice for choice in question.choices]
            + [space + letter for letter in LETTERS[: len(question.choices)]])


@dataclass
class Encoded:
    """One question as token ids: contexts, and per continuation its ids and which context it follows."""

    context: str
    """The context text (for results.json: what a plain forward pass must be given)."""
    texts: list[str]
    """The continuations, as `continuations()` gives them."""
    contexts: list[list[int]]
    """Context ids: [0] the question's own; more only where a continuation merged across the boundary."""
    continuation_ids: list[list[int]]
    follows: list[int]
    """Per continuation: the index into `contexts` of the context it follows."""
    truncated: int = 0
    """Context tokens dropped from the left to fit the model's positions."""


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _encode_one(context: str, texts: list[str], ids: list[list[int]], max_positions: int | None) -> Encoded:
    """`ids`: the tokenizer's ids of the context, then of context + each continuation."""
    own, contexts, continuation_ids, follows = ids[0], [ids[0]], [], []
    for full in ids[1:]:
        cut = min(_common_prefix(own, full), len(full) - 1)  # at least one scored token
        head = full[:cut]  # the question's context, or (a token merged across the boundary) the choice's own
        if head not in contexts:
            contexts.append(head)
        follows.append(contexts.index(head))
        continuation_ids.append(full[cut:])
    truncated, longest = 0, max(len(t) for t in continuation_ids)
    if max_positions and max(len(c) for c in contexts) + longest > max_positions:
        keep = max_positions - longest  # lm-eval's rule: drop the oldest context tokens
        if keep < 1:
            text = texts[[len(t) for t in continuation_ids].index(longest)]
            raise InferenceError(f"the continuation {text!r} is {longest} tokens: it does not fit the model's "
                                 f"{max_positions} positions")
        truncated = max(len(c) for c in contexts) - keep
        contexts = [c[-keep:] for c in contexts]
    return Encoded(context, texts, contexts, continuation_ids, follows, truncated)


def encode_questions(tokenizer, questions: list[Question], shots: int, chat: bool,
                     max_positions: int | None = None) -> list[Encoded]:
    """Every question's context and continuations as token ids (see the module docstring)."""
    encoded = []
    for question in questions:
        context = context_text(tokenizer, render_prompt(question, shots), chat)
        texts = continuations(question, chat)
        # a chat context carries its special tokens as text: the template already placed BOS
        ids = tokenizer([context] + [context + t for t in texts], add_special_tokens=not chat)["input_ids"]
        encoded.append(_encode_one(context, texts, [list(i) for i in ids], max_positions))
    return encoded
