"""Benchmark multiple-choice scoring on CPU: questions per second, packed and prompt-shared versus one at a time.

    python benchmarks/evaluate.py                         # 300 questions, 0 and 3 shots, 2 threads
    python benchmarks/evaluate.py --questions 100 --shots 5

Builds a tiny LLaMA in code (4 layers, hidden 128) for the LLaMA-2 tokenizer
(../shared/realdata; else a SentencePiece tokenizer trained on the bundled
sample) and a generated quiz of 4-choice questions with dev examples, then
scores every continuation (4 choice texts + 4 letters a question) three ways:

    one at a time     a plain forward pass of context + continuation each (8 passes a question)
    packed            every (context + continuation) its own document, packed into rows with document isolation
    packed + shared   `colossal_llama.evaluate`: the context once, each continuation attending to it

All three read the same token ids; the script checks that their scores agree
(1e-4) before it prints the figures.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

import torch

from _common import REALDATA, make_llama2_tokenizer

from colossal_llama.evaluate.prompts import Encoded, encode_questions
from colossal_llama.evaluate.scoring import score_encoded
from colossal_llama.evaluate.tasks import Question
from colossal_llama.inference.generation import load_for_inference
from colossal_llama.model.tiny import build_tiny_llama

WORDS = ("harbour island ferry salt cod tuna granite ridge north south east west lighthouse market festival "
         "winter summer fishermen village bridge river tower mountain valley council charter year ship").split()


def make_quiz(count: int, seed: int = 0) -> list[Question]:
    """`count` 4-choice questions of random words, each subject with 5 dev examples."""
    rng = random.Random(seed)

    def question(file: str, line: int, subject: str) -> Question:
        text = " ".join(rng.choices(WORDS, k=rng.randint(8, 20))).capitalize() + "?"
        choices = [" ".join(rng.choices(WORDS, k=rng.randint(1, 5))) for _ in range(4)]
        return Question(file, line, subject, text, choices, rng.randrange(4))

    questions = []
    for s in range(4):
        dev = [question("dev", i, f"subject_{s}") for i in range(5)]
        for i in range(count // 4):
            questions.append(question(f"quiz_{s}.jsonl", i + 1, f"subject_{s}"))
            questions[-1].dev = dev
    return questions


def one_document_per_continuation(enc: Encoded) -> Encoded:
    """The same question with a context copy per continuation: packed as separate documents."""
    contexts = [enc.contexts[f] for f in enc.follows]
    return Encoded(enc.context, enc.texts, contexts, enc.continuation_ids, list(range(len(contexts))))


@torch.no_grad()
def one_at_a_time(model, encoded: list[Encoded]) -> list[list[float]]:
    """A plain forward pass per continuation, full logits, summed log-probability of its tokens."""
    scores = []
    for enc in encoded:
        row = []
        for cont, follows in zip(enc.continuation_ids, enc.follows):
            context = enc.contexts[follows]
            ids = torch.tensor([context + cont])
            logprobs = torch.log_softmax(model(ids).logits[0, len(context) - 1:-1].float(), dim=-1)
            row.append(float(logprobs.gather(1, ids[0, len(context):, None]).sum()))
        scores.append(row)
    return scores


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def tokenizer_dir(workdir: str) -> str:
    if os.path.isfile(os.path.join(REALDATA, "tokenizers", "llama2-tokenizer.model")):
        return make_llama2_tokenizer(os.path.join(workdir, "tokenizer"))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from helpers import sample_texts

    from colossal_llama.tokenizer.train import train_llama_tokenizer

    return train_llama_tokenizer(sample_texts(), os.path.join(workdir, "tokenizer"), vocab_size=1000)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=300)
    p.add_argument("--shots", type=int, nargs="+", default=[0, 3])
    p.add_argument("--batch_size", type=int, default=16, help="questions a forward pass (packed forms)")
    p.add_argument("--row_tokens", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        model_dir = build_tiny_llama(tokenizer_dir(workdir), os.path.join(workdir, "model"), layers=4, hidden=128,
                                     positions=2048)
        model, tokenizer = load_for_inference(model_dir, device="cpu", dtype="fp32")
    questions = make_quiz(args.questions)
    pad = tokenizer.eos_token_id
    print(f"{len(questions)} questions x 8 continuations, tiny LLaMA 4 x 128, vocabulary {len(tokenizer)}, "
          f"{args.threads} threads, batch {args.batch_size} questions, rows of {args.row_tokens} tokens")
    for shots in args.shots:
        encoded = encode_questions(tokenizer, questions, shots, chat=False)
        tokens = sum(len(e.contexts[0]) for e in encoded) / len(encoded)
        separate = [one_document_per_continuation(e) for e in encoded]
        score_encoded(model, encoded[:args.batch_size], pad, args.batch_size, args.row_tokens)  # warm-up
        shared, t_shared = timed(score_encoded, model, encoded, pad, args.batch_size, args.row_tokens)
        packed, t_packed = timed(score_encoded, model, separate, pad, args.batch_size, args.row_tokens)
        plain, t_plain = timed(one_at_a_time, model, encoded)
        worst = max(abs(a - b) for x, y in [(shared, plain), (packed, plain)] for r, s in zip(x, y)
                    for a, b in zip(r, s))
        assert worst < 1e-4, f"scores disagree by {worst}"
        print(f"\n{shots}-shot, context {tokens:.0f} tokens on average (scores agree to {worst:.1e})")
        for name, seconds in [("one at a time", t_plain), ("packed", t_packed), ("packed + shared", t_shared)]:
            print(f"  {name:<16}{len(questions) / seconds:>9.1f} questions/s{t_plain / seconds:>8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
