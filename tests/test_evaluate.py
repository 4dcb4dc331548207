"""Multiple-choice evaluation: task layouts and bad input, packed scores equal to plain forward passes
(SentencePiece and byte-level tokenizers, base and chat prompts), the boundary rule, the command line."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from colossal_llama.data.templates import default_template
from colossal_llama.errors import DataError, InferenceError
from colossal_llama.evaluate import evaluate_model, read_tasks
from colossal_llama.evaluate.__main__ import main
from colossal_llama.evaluate.prompts import Encoded, _encode_one, context_text, encode_questions, render_prompt
from colossal_llama.evaluate.run import evaluate_loaded
from colossal_llama.evaluate.scoring import score_encoded
from colossal_llama.inference.generation import load_for_inference
from helpers import REPO

MMLU_TEST = [  # headerless, as MMLU ships it; a quoted comma and a quoted line break
    ["What is the capital of the Calvessa Islands?", "Port Aurel", "Kessel", "Saltery", "Oddham", "A"],
    ["Which bone, of these, is in the arm?", "Femur", "Humerus", "Tibia", "Fibula", "B"],
    ["Pick the\nsecond line", "one", "two", "three", "four", "b"],
]
MMLU_DEV = [["Which organ pumps blood?", "Liver", "Lung", "Heart", "Skin", "C"],
            ["How many islands are there?", "Two", "Four", "Six", "Eight", "C"]]
CMMLU_TEST = [["", "Question", "A", "B", "C", "D", "Answer"],  # a header and an index column, as CMMLU ships it
              ["0", "卡尔维萨群岛的首府是哪里？", "奥雷尔港", "凯塞尔", "索尔特里", "奥德姆", "A"],
              ["1", "大塔恩岛的面积有多大？", "96平方千米", "1284平方千米", "547平方千米", "4平方千米", "B"]]
CMMLU_DEV = [CMMLU_TEST[0], ["0", "哪个岛最大？", "大塔恩岛", "索雷尔礁", "灰丘", "凯塞尔", "A"]]
QUIZ = [
    {"question": "Where is Kessel?", "choices": ["North", "South", "East"], "answer": 2, "subject": "world"},
    {"question": "What do the islanders fish?", "choices": ["Cod", "Tuna", "Eel", "Herring"], "answer": "d"},
    {"question": "Which sea?", "choices": ["Serin", "Baltic", "Red", "Dead"], "answer": "A", "subject": "world",
     "split": "dev"},
]


def write_csv(path, rows) -> str:
    import csv

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return str(path)


def write_jsonl(path, records) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return str(path)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tasks")
    return {"mmlu": write_csv(root / "mmlu" / "test" / "anatomy_test.csv", MMLU_TEST),
            "mmlu_dev": write_csv(root / "mmlu" / "dev" / "anatomy_dev.csv", MMLU_DEV),
            "cmmlu": write_csv(root / "cmmlu" / "test" / "astronomy.csv", CMMLU_TEST),
            "cmmlu_dev": write_csv(root / "cmmlu" / "dev" / "astronomy.csv", CMMLU_DEV),
            "quiz": write_jsonl(root / "quiz_islands.jsonl", QUIZ)}


def test_layouts_subjects_answers_and_dev_examples(tasks):
    questions = read_tasks([tasks["mmlu"], tasks["cmmlu"], tasks["quiz"]])
    assert [(q.subject, q.answer_letter, q.line) for q in questions] == [
        ("anatomy", "A", 1), ("anatomy", "B", 2), ("anatomy", "B", 3), ("astronomy", "A", 2), ("astronomy", "B", 3),
        ("world", "C", 1), ("quiz_islands", "D", 2)]
    assert questions[2].question == "Pick the\nsecond line" and questions[1].question.startswith("Which bone, of")
    assert [d.question for d in questions[0].dev] == [r[0] for r in MMLU_DEV]  # MMLU: data/dev/<subject>_dev.csv
    assert [d.question for d in questions[3].dev] == ["哪个岛最大？"]  # CMMLU: dev/<subject>.csv
    assert [d.question for d in questions[5].dev] == ["Which sea?"] and questions[6].dev == []  # "split": "dev"
    assert questions[5].choices == ["North", "South", "East"]
    # a folder means its task files, dev files left out
    folder = os.path.dirname(tasks["mmlu"])
    write_csv(os.path.join(folder, "anatomy_dev.csv"), MMLU_DEV)
    assert [q.file for q in read_tasks([folder])] == [tasks["mmlu"]] * 3
    assert read_tasks([folder])[0].dev[0].file.endswith(os.path.join("test", "anatomy_dev.csv"))  # beside first
    os.remove(os.path.join(folder, "anatomy_dev.csv"))


@pytest.mark.parametrize("rows, line, reason", [
    ([["", "Question", "A", "B", "C", "D"], ["0", "q", "a", "b", "c", "d"]], 1, "the header has no 'Answer' column"),
    ([MMLU_TEST[0], ["q", "a", "b", "c", "A"]], 2, "expected 6 columns like the first row, got 5"),
    ([MMLU_TEST[0], ["q", "a", "b", "c", "d", "E"]], 2, "answer 'E' is not among the choices A-D"),
    ([MMLU_TEST[0], ["q", "a", " ", "c", "d", "A"]], 2, "choice B is empty"),
    ([["q", "a", "A"]], 1, "expected columns question, A, B, ..., answer; got 3 columns"),
], ids=["csv-header-without-answer", "csv-missing-column", "csv-answer-not-a-choice", "csv-empty-choice",
        "csv-too-few-columns"])
def test_bad_csv_is_file_line_reason(tmp_path, rows, line, reason):
    path = write_csv(tmp_path / "bad_test.csv", rows)
    with pytest.raises(DataError) as error:
        read_tasks([path])
    assert str(error.value).startswith(f"{path}:{line}: ") and reason in str(error.value)


@pytest.mark.parametrize("record, reason", [
    ({"question": "q", "answer": "A"}, 'expected a non-empty list "choices"'),
    ({"question": "q", "choices": ["a", "b"], "answer": 2}, "answer index 2 is not among the 2 choices (0-based)"),
    ({"question": "q", "choices": ["a", "b"], "answer": "C"}, "answer 'C' is not among the choices A-B"),
    ({"question": "q", "choices": ["a", ""], "answer": "A"}, "choice B is empty"),
    ({"question": "", "choices": ["a", "b"], "answer": "A"}, "the question is empty"),
], ids=["no-choices", "index-out-of-range", "letter-not-a-choice", "empty-choice", "empty-question"])
def test_bad_jsonl_is_file_line_reason(tmp_path, record, reason):
    path = write_jsonl(tmp_path / "bad.jsonl", [QUIZ[0], record])
    with pytest.raises(DataError) as error:
        read_tasks([path])
    assert str(error.value) == f"{path}:2: {reason}"


def test_missing_task_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match=r"nope/anatomy_test\.csv: no such task file or folder"):
        read_tasks([str(tmp_path / "nope" / "anatomy_test.csv")])
    with pytest.raises(DataError, match="no task files"):
        read_tasks([str(tmp_path)])


def test_boundary_rule_keeps_the_full_texts_ids():
    """Scored tokens follow the longest common prefix; a merged choice keeps its own context."""
    enc = _encode_one("ctx", ["x", "y", "z"], [[1, 5, 6], [1, 5, 6, 7], [1, 5, 9, 8], [1, 5, 6]], None)
    assert enc.contexts == [[1, 5, 6], [1, 5]] and enc.follows == [0, 1, 1]
    assert enc.continuation_ids == [[7], [9, 8], [6]]  # z: the full text is the context's ids: its last one scored
    cut = _encode_one("ctx", ["x"], [list(range(10)), list(range(10)) + [42, 43]], max_positions=5)
    assert cut.truncated == 7 and cut.contexts == [[7, 8, 9]] and cut.continuation_ids == [[42, 43]]


def plain_logprob(model, context_ids: list[int], continuation_ids: list[int]) -> float:
    """The reference: one forward pass of context + continuation, summed log-probability of the continuation."""
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    rows = torch.arange(len(context_ids) - 1, ids.shape[1] - 1)
    return float(logprobs[rows, ids[0, 1:][rows]].sum())


@pytest.fixture(scope="module", params=["sp", "llama3"])
def loaded(request, tmp_path_factory, sp_tokenizer_dir, llama3_tokenizer_dir):
    """(model dir, model, tokenizer without a chat template, llama version) for each tokenizer kind."""
    from colossal_llama.model.tiny import build_tiny_llama

    tokenizer_dir = {"sp": sp_tokenizer_dir, "llama3": llama3_tokenizer_dir}[request.param]
    out = build_tiny_llama(tokenizer_dir, str(tmp_path_factory.mktemp("eval_model")), positions=512)
    model, tokenizer = load_for_inference(out, device="cpu", dtype="fp32")
    tokenizer.chat_template = None  # the chat tests add the project's template for the tokenizer kind
    return out, model, tokenizer, {"sp": 2, "llama3": 3}[request.param]


@pytest.mark.parametrize("chat", ["off", "on"])
def test_every_score_equals_a_plain_forward_pass(loaded, tasks, chat):
    _, model, tokenizer, version = loaded
    if chat == "on":
        tokenizer = copy.copy(tokenizer)
        tokenizer.chat_template = default_template(version).chat_template()
    questions = read_tasks([tasks["mmlu"], tasks["cmmlu"], tasks["quiz"]])
    # small rows and batches: several rows per pass, several questions per row, several passes
    results = evaluate_loaded(model, tokenizer, questions, shots=1, batch_size=3, chat=chat, row_tokens=300)
    assert results["settings"]["chat"] is (chat == "on")
    for question, result in zip(questions, results["questions"]):
        prompt = render_prompt(question, 1)
        if chat == "on":
            assert result["prompt"].count(prompt) == 1 and result["prompt"] != prompt  # the text inside is the same
        else:
            assert result["prompt"] == prompt
        for choice in result["choices"]:
            for text, score in [(choice["continuation"], choice["logprob"]),
                                (choice["letter_continuation"], choice["letter_logprob"])]:
                assert text.startswith(" ") is (chat == "off")
                context_ids = tokenizer(result["prompt"], add_special_tokens=chat == "off")["input_ids"]
                full_ids = tokenizer(result["prompt"] + text, add_special_tokens=chat == "off")["input_ids"]
                assert full_ids[:len(context_ids)] == context_ids  # no merge in this data: the plain rule
                reference = plain_logprob(model, context_ids, full_ids[len(context_ids):])
                assert abs(score - reference) < 1e-5, (text, score, reference)
            assert choice["logprob_per_char"] == pytest.approx(choice["logprob"] / len(choice["continuation"]))
        best = max(result["choices"], key=lambda c: c["logprob"])
        assert result["chosen"]["acc"] == "ABCD"[result["choices"].index(best)]
        assert result["correct"]["acc"] is (result["chosen"]["acc"] == result["answer"])
    assert results["overall"]["questions"] == 7
    assert set(results["files"]) == {tasks["mmlu"], tasks["cmmlu"], tasks["quiz"]}
    assert results["subjects"]["anatomy"]["questions"] == 3
    acc = sum(r["correct"]["acc_letter"] for r in results["questions"]) / 7
    assert results["overall"]["acc_letter"] == pytest.approx(acc)


def test_merged_contexts_score_like_plain_passes(loaded):
    """Encoded questions with a choice on its own context (a boundary merge), packed with others."""
    model = loaded[1]
    generator = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, 200, (n,), generator=generator).tolist()

    encoded = [Encoded("", ["a", "b", "c"], [ids(30), ids(29)], [ids(3), ids(1), ids(4)], [0, 1, 0]),
               Encoded("", ["a", "b"], [ids(50)], [ids(2), ids(5)], [0, 0]),
               Encoded("", ["a", "b"], [ids(7)], [ids(6), ids(1)], [0, 0])]
    scores = score_encoded(model, encoded, pad_id=0, batch_size=2, row_tokens=64)
    for enc, row in zip(encoded, scores):
        for cont, follows, score in zip(enc.continuation_ids, enc.follows, row):
            assert abs(score - plain_logprob(model, enc.contexts[follows], cont)) < 1e-5


def test_chat_mode_auto_on_off(loaded, tasks):
    _, model, tokenizer, version = loaded
    question = read_tasks([tasks["quiz"]])[0]
    with pytest.raises(InferenceError, match="no chat_template"):
        evaluate_loaded(model, tokenizer, [question], chat="on")
    chat_tokenizer = copy.copy(tokenizer)
    chat_tokenizer.chat_template = default_template(version).chat_template()
    assert context_text(chat_tokenizer, "P?", True).count("P?") == 1
    assert context_text(chat_tokenizer, "P?", False) == "P?"
    auto = encode_questions(chat_tokenizer, [question], 0, chat=True)[0]
    off = encode_questions(chat_tokenizer, [question], 0, chat=False)[0]
    assert evaluate_loaded(model, chat_tokenizer, [question])["questions"][0]["prompt"] == auto.context
    assert evaluate_loaded(model, chat_tokenizer, [question], chat="off")["questions"][0]["prompt"] == off.context


def test_bf16_scores_are_close_to_fp32(loaded, tasks):
    _, model, tokenizer, _ = loaded
    questions = read_tasks([tasks["quiz"]])
    fp32 = evaluate_loaded(model, tokenizer, questions)["questions"]
    bf16 = evaluate_loaded(model.to(torch.bfloat16), tokenizer, questions)["questions"]
    model.to(torch.float32)
    for a, b in zip(fp32, bf16):
        for ca, cb in zip(a["choices"], b["choices"]):
            assert abs(ca["logprob"] - cb["logprob"]) < 0.05 * abs(ca["logprob"]) + 0.1


def test_command_line_table_and_results_json(tiny_model_dir, tasks, tmp_path, capsys):
    folder = os.path.dirname(tasks["mmlu"])
    assert main(["--model", tiny_model_dir, "--tasks", folder, tasks["quiz"], "--shots", "2",
                 "--batch_size", "2", "--output", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "acc_norm" in out and "overall" in out and "anatomy" in out
    with open(tmp_path / "eval" / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert results["overall"]["questions"] == 5 and results["config"]["shots"] == 2
    assert results["questions"][0]["prompt"].count("Answer: C\n\n") == 2  # both dev examples, with answers
    assert set(results["questions"][0]["chosen"]) == {"acc", "acc_norm", "acc_letter"}
    api = evaluate_model(tiny_model_dir, [folder, tasks["quiz"]], shots=2, batch_size=16)
    assert api["overall"] == results["overall"] and api["subjects"] == results["subjects"]


def test_command_line_bad_input_is_one_line(tmp_path, tiny_model_dir):
    """As a user runs it: a bad task file is `error: FILE:LINE: reason`, exit 2, before the model loads."""
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "A"}])
    done = subprocess.run([sys.executable, "-m", "colossal_llama.evaluate", "--model", tiny_model_dir,
                           "--tasks", path], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and done.stderr == f'error: {path}:1: expected a non-empty list "choices"\n'
