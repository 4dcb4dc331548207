"""Multiple-choice task files: MMLU/CMMLU CSV and JSONL, read and checked, with their few-shot examples.

    questions = read_tasks(["mmlu/data/test", "quiz.jsonl"])   # a folder means every task file in it
    questions[0].subject, questions[0].choices, questions[0].answer, questions[0].dev

Layouts (one file per subject; the subject is the file name's stem without a
`_test` / `_val` / `_dev` suffix: `anatomy_test.csv` -> `anatomy`):

- CSV, MMLU: no header, `question,A,B,C,D,answer` (any number >= 2 of choice
  columns; the answer is the last column, a letter).
- CSV, CMMLU: a header row naming `Question`, the choice letters `A`, `B`, ...
  and `Answer` (case does not matter; other columns, like CMMLU's unnamed
  index, are ignored).
- JSONL: `{"question": str, "choices": [str, ...], "answer": "B" | 1, "subject": str}`;
  the answer is a letter or a 0-based index; `subject` defaults to the file's.
  A record with `"split": "dev"` is a few-shot example, not a question.

Few-shot examples (`dev`) of a subject come from the first of these that
exists beside a task file `DIR/NAME.EXT`: `DIR/<subject>_dev.EXT`,
`DIR/../dev/<subject>_dev.EXT` (MMLU: data/test + data/dev),
`DIR/../dev/<subject>.EXT` (CMMLU: test/ + dev/), plus, in JSONL files, the
records marked `"split": "dev"`. Examples are taken in file order. A folder
given as a task path means its `*.csv`, `*.jsonl`, `*.jsonl.gz` files, sorted,
except dev files (`*_dev.*`).

Every problem is a `DataError` `FILE:LINE: reason` (a missing column, an
answer not among the choices, an empty choice or question, a record without
choices) or `PATH: reason` (a task path that does not exist).
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field

from colossal_llama.errors import DataError
from colossal_llama.jsonl import line_error, open_input, read_jsonl

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TASK_SUFFIXES = (".csv", ".jsonl", ".jsonl.gz")
_SPLIT_SUFFIX = re.compile(r"_(test|val|dev)$")


@dataclass
class Question:
    """One multiple-choice question (or few-shot example) and where it was read."""

    file: str
    """The task file, as given (or found in a given folder)."""
    line: int
    """Line of the file where the question starts (1-based)."""
    subject: str
    question: str
    choices: list[str]
    answer: int
    """Index of the right choice."""
    dev: list[Question] = field(default_factory=list, repr=False)
    """Few-shot examples of the subject, in file order (shared by the subject's questions)."""

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


def subject_of(path: str) -> str:
    """`data/test/anatomy_test.csv` -> `anatomy`."""
    name = os.path.basename(path)
    for suffix in TASK_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _SPLIT_SUFFIX.sub("", name)


def _is_dev_file(name: str) -> bool:
    return name[: -len(_suffix(name))].endswith("_dev")


def _suffix(path: str) -> str:
    return next(s for s in TASK_SUFFIXES if path.endswith(s))


def task_files(paths: list[str]) -> list[str]:
    """The task files of `paths`: files as given, folders expanded (sorted, dev files left out).

    Raises:
        DataError: a path that does not exist, a file of an unknown format, a folder without task files.
    """
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, n) for n in os.listdir(path)
                           if n.endswith(TASK_SUFFIXES) and not _is_dev_file(n))
            if not found:
                raise DataError(f"{path}: no task files (*.csv, *.jsonl, *.jsonl.gz) in this folder")
            files.extend(found)
        elif not os.path.exists(path):
            raise DataError(f"{path}: no such task file or folder")
        elif not path.endswith(TASK_SUFFIXES):
            raise DataError(f"{path}: not a task file (expected .csv, .jsonl or .jsonl.gz)")
        else:
            files.append(path)
    return files


def _checked(path: str, line: int, question, choices, answer: int, subject: str) -> Question:
    if not isinstance(question, str) or not question.strip():
        raise line_error(path, line, "the question is empty")
    if len(choices) < 2:
        raise line_error(path, line, f"expected at least 2 choices, got {len(choices)}")
    for letter, choice in zip(LETTERS, choices):
        if not isinstance(choice, str) or not choice.strip():
            raise line_error(path, line, f"choice {letter} is empty")
    return Question(path, line, subject, question.strip(), [c.strip() for c in choices], answer, [])


def _letter_answer(path: str, line: int, value: str, count: int) -> int:
    letter = value.strip().upper()
    if len(letter) != 1 or letter not in LETTERS[:count]:
        raise line_error(path, line, f"answer {value!r} is not among the choices {LETTERS[0]}-{LETTERS[count - 1]}")
    return LETTERS.index(letter)


def _csv_rows(path: str):
    """(starting line, cells) of every non-blank row of a CSV file."""
    with open_input(path) as f:
        try:
            text = f.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise line_error(path, start, f"not a CSV row: {exc}") from None
        if any(cell.strip() for cell in row):
            yield start, row


def _csv_columns(path: str, line: int, header: list[str]) -> tuple[int, list[int], int] | None:
    """(question column, choice columns, answer column) of a header row, or None for a data row."""
    names = [cell.strip().lower() for cell in header]
    if "question" not in names and "answer" not in names:
        return None
    for needed in ("question", "answer"):
        if needed not in names:
            raise line_error(path, line, f"the header has no {needed.capitalize()!r} column (columns: {header})")
    letters = [names.index(c.lower()) for c in LETTERS if c.lower() in names]
    if len(letters) < 2 or letters != sorted(letters) or names[letters[0]] != "a":
        raise line_error(path, line, f"the header needs choice columns A, B, ... in order (columns: {header})")
    return names.index("question"), letters, names.index("answer")


def read_csv_questions(path: str) -> list[Question]:
    """The questions of an MMLU (headerless) or CMMLU (header row) CSV file; see the module docstring."""
    subject, questions, columns, width = subject_of(path), [], None, None
    for number, row in _csv_rows(path):
        if width is None:
            width = len(row)
            columns = _csv_columns(path, number, row)
            if columns is not None:
                continue
            if width < 4:
                raise line_error(path, number, f"expected columns question, A, B, ..., answer; got {width} columns")
            columns = (0, list(range(1, width - 1)), width - 1)
        if len(row) != width:
            raise line_error(path, number, f"expected {width} columns like the first row, got {len(row)} "
                                           "(a missing column, or an unquoted comma?)")
        q, choice_columns, a = columns
        choices = [row[c] for c in choice_columns]
        answer = _letter_answer(path, number, row[a], len(choices))
        questions.append(_checked(path, number, row[q], choices, answer, subject))
    return questions


def _jsonl_answer(path: str, line: int, value, count: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < count:
            raise line_error(path, line, f"answer index {value} is not among the {count} choices (0-based)")
        return value
    if isinstance(value, str):
        return _letter_answer(path, line, value, count)
    raise line_error(path, line, f"answer must be a letter or a 0-based index, got {value!r}")


def read_jsonl_questions(path: str) -> tuple[list[Question], list[Question]]:
    """(questions, dev examples) of a JSONL task file; see the module docstring."""
    default_subject, questions, dev = subject_of(path), [], []
    for number, record in read_jsonl(path):
        choices = record.get("choices")
        if not isinstance(choices, list) or not choices:
            raise line_error(path, number, 'expected a non-empty list "choices"')
        answer = _jsonl_answer(path, number, record.get("answer"), len(choices))
        subject = record.get("subject") or default_subject
        if not isinstance(subject, str):
            raise line_error(path, number, f"subject must be a string, got {subject!r}")
        question = _checked(path, number, record.get("question"), choices, answer, subject)
        (dev if record.get("split") == "dev" else questions).append(question)
    return questions, dev


def _read_file(path: str) -> tuple[list[Question], list[Question]]:
    if path.endswith(".csv"):
        return read_csv_questions(path), []
    return read_jsonl_questions(path)


def dev_file(path: str, subject: str) -> str | None:
    """The few-shot file beside the task file `path` for `subject`, if one exists."""
    folder, ext = os.path.dirname(path), _suffix(path)
    dev_folder = os.path.join(os.path.dirname(folder) if folder else "..", "dev")
    for candidate in (os.path.join(folder, f"{subject}_dev{ext}"), os.path.join(dev_folder, f"{subject}_dev{ext}"),
                      os.path.join(dev_folder, f"{subject}{ext}")):
        if os.path.isfile(candidate) and os.path.abspath(candidate) != os.path.abspath(path):
            return candidate
    return None


def read_tasks(paths: list[str]) -> list[Question]:
    """Every question of the task files or folders `paths`, in order, each with its subject's dev examples.

    Raises:
        DataError: `FILE:LINE: reason` for a bad row or record, `PATH: reason` for a missing path,
            a file of an unknown format or a file without questions.
    """
    questions: list[Question] = []
    for path in task_files(paths):
        found, inline_dev = _read_file(path)
        if not found:
            raise DataError(f"{path}: no questions")
        pools: dict[str, list[Question]] = {}
        for question in found:
            if question.subject not in pools:
                extra = dev_file(path, question.subject)
                pools[question.subject] = [d for d in inline_dev if d.subject == question.subject]
                if extra is not None:
                    extra_questions, extra_dev = _read_file(extra)  # every record of a dev file is an example
                    pools[question.subject] += [d for d in extra_questions + extra_dev if d.subject == question.subject]
            question.dev = pools[question.subject]
        questions.extend(found)
    return questions
