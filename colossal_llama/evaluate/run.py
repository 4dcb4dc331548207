"""Evaluate a model folder on multiple-choice task files: scores, choices, accuracy per subject, file, overall.

    results = evaluate_model("runs/demo/stages/05-sft/model", ["mmlu/data/test"], shots=5)
    results["overall"]   # {"questions": 1531, "acc": 0.41, "acc_norm": 0.43, "acc_letter": 0.45}

Three accuracies, as lm-eval and ColossalEval report them: `acc` picks the
choice whose text has the highest summed log-probability, `acc_norm` the
highest log-probability per character of the continuation (so long choices
are not penalised for their length), `acc_letter` the highest summed
log-probability of the choice's letter. Ties go to the first choice.
"""

from __future__ import annotations

from colossal_llama.errors import InferenceError
from colossal_llama.evaluate.tasks import LETTERS, Question, read_tasks

CHAT_CHOICES = ("auto", "on", "off")
METRICS = ("acc", "acc_norm", "acc_letter")


def use_chat(tokenizer, chat: str) -> bool:
    """Whether prompts go through the chat template: `auto` = when the tokenizer has one."""
    if chat not in CHAT_CHOICES:
        raise InferenceError(f"chat must be one of {CHAT_CHOICES}, got {chat!r}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat == "on" and not has_template:
        raise InferenceError(f"{tokenizer.name_or_path}: --chat on, but the tokenizer has no chat_template")
    return has_template if chat == "auto" else chat == "on"


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # the first of equal values


def question_result(question: Question, encoded, scores: list[float]) -> dict:
    """The record of one question in results.json: enough to recompute any score with a plain forward pass."""
    n = len(question.choices)
    texts, letters = encoded.texts[:n], encoded.texts[n:]
    sums, letter_sums = scores[:n], scores[n:]
    per_char = [s / len(t) for s, t in zip(sums, texts)]
    chosen = {"acc": _argmax(sums), "acc_norm": _argmax(per_char), "acc_letter": _argmax(letter_sums)}
    return {
        "file": question.file, "line": question.line, "subject": question.subject,
        "prompt": encoded.context, "answer": question.answer_letter, "truncated_tokens": encoded.truncated,
        "choices": [{"continuation": t, "logprob": s, "logprob_per_char": c, "letter_continuation": lt,
                     "letter_logprob": ls} for t, s, c, lt, ls in zip(texts, sums, per_char, letters, letter_sums)],
        "chosen": {metric: LETTERS[i] for metric, i in chosen.items()},
        "correct": {metric: i == question.answer for metric, i in chosen.items()},
    }


def summarize(results: list[dict], key: str | None) -> dict:
    """{"questions", "acc", "acc_norm", "acc_letter"} of all results (key None) or per value of `key`."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        groups.setdefault(result[key] if key else "overall", []).append(result)
    summary = {name: {"questions": len(group),
                      **{m: sum(r["correct"][m] for r in group) / len(group) for m in METRICS}}
               for name, group in groups.items()}
    return summary if key else summary["overall"]


def evaluate_loaded(model, tokenizer, questions: list[Question], shots: int = 0, batch_size: int = 16,
                    chat: str = "auto", row_tokens: int = 1024, progress=None) -> dict:
    """`evaluate_model` with a loaded model and tokenizer and read questions."""
    from colossal_llama.evaluate.prompts import encode_questions
    from colossal_llama.evaluate.scoring import score_encoded

    if shots < 0 or batch_size < 1 or row_tokens < 1:
        raise InferenceError(f"shots must be >= 0, batch_size and row_tokens >= 1; got {shots}, {batch_size}, "
                             f"{row_tokens}")
    chat_on = use_chat(tokenizer, chat)
    limit = getattr(model.config, "max_position_embeddings", None)
    encoded = encode_questions(tokenizer, questions, shots, chat_on, limit)
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    scores = score_encoded(model, encoded, pad_id, batch_size, row_tokens, progress)
    results = [question_result(q, e, s) for q, e, s in zip(questions, encoded, scores)]
    return {"overall": summarize(results, None), "files": summarize(results, "file"),
            "subjects": summarize(results, "subject"), "questions": results,
            "settings": {"shots": shots, "chat": chat_on, "batch_size": batch_size, "row_tokens": row_tokens}}


def evaluate_model(model_dir: str, task_paths: list[str], shots: int = 0, batch_size: int = 16,
                   device: str | None = None, dtype: str | None = None, chat: str = "auto", *,
                   row_tokens: int = 1024, progress=None) -> dict:
    """Accuracy of the model folder (or hub id) `model_dir` on the multiple-choice tasks `task_paths`.

    Args:
        task_paths: task files and folders (see `colossal_llama.evaluate.tasks`).
        shots: dev examples (with their answers) before each question.
        batch_size: questions scored together in one forward pass.
        device, dtype: as `load_for_inference` (default cuda + bf16 when available, else cpu + fp32).
        chat: `auto` (the chat template when the tokenizer has one), `on` or `off`.
        row_tokens: tokens per packed row (see `colossal_llama.evaluate.scoring`).
        progress: called with (questions done, questions) after each forward pass.
    Returns:
        {"overall": {"questions", "acc", "acc_norm", "acc_letter"}, "files": {path: same},
        "subjects": {subject: same}, "questions": [per-question records], "settings": {...}}
    Raises:
        DataError: a bad task file (before the model is loaded).
        InferenceError: a model folder or setting that cannot be used.
    """
    from colossal_llama.inference.generation import load_for_inference

    questions = read_tasks(task_paths)  # bad input fails before the model loads
    model, tokenizer = load_for_inference(model_dir, device, dtype, flag="--model")
    results = evaluate_loaded(model, tokenizer, questions, shots, batch_size, chat, row_tokens, progress)
    results["settings"].update(model=model_dir, tasks=list(task_paths), device=str(model.device),
                               dtype=str(model.dtype).replace("torch.", ""))
    return results


def results_table(results: dict) -> str:
    """The summaries as a text table: subjects, then files, then overall."""
    rows = [("subject", results["subjects"]), ("file", results["files"]), ("overall", {"all": results["overall"]})]
    width = max(len(name) for _, group in rows for name in group)
    lines = [f"{'':{width + 9}}{'questions':>10}{'acc':>9}{'acc_norm':>10}{'acc_letter':>12}"]
    for kind, group in rows:
        for name, s in group.items():
            lines.append(f"{kind:<9}{name:<{width}}{s['questions']:>10}{s['acc']:>9.4f}{s['acc_norm']:>10.4f}"
                         f"{s['acc_letter']:>12.4f}")
    return "\n".join(lines)
