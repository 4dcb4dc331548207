"""The quickstart: the whole Chinese continual pre-training recipe on bundled data, on one CPU, in minutes.

    make demo          # or: python applications/quickstart/demo.py [--run_dir runs/demo]

1. a base tokenizer trained from the bundled English text only, and a tiny
   LLaMA for it (built in code: nothing is downloaded);
2. the stage recipe `recipe.yaml` through `python -m colossal_llama.stages`:
   pretraining on a mixture -> vocabulary expansion with Chinese pieces
   learned from the bundled Chinese text (compression report) and embedding
   initialisation, embeddings-only training -> Chinese knowledge injection ->
   knowledge replay (Q&A in Chinese and English) -> SFT;
3. the knowledge check: loss on held-out questions about the invented
   Calvessa Islands, in English and Chinese, before and after the knowledge
   stages, and accuracy on a held-out multiple-choice quiz about them
   (`data/quiz/`, the recipe's `benchmarks:`);
4. plots and report.md rendered from the run's tensorboard logs, and a chat
   exchange with the final model.

Rerunning skips what is finished (the recipe runner resumes); `make clean`
starts over.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ENGLISH = ("encyclopedia_en.jsonl", "story_en.jsonl.gz", "qa_en.jsonl")
QUESTIONS = [{"role": "user", "content": "What happened in the Calvessa Islands in 1962?"},  # asked in the SFT data
             {"role": "user", "content": "2小时是多少分钟？"}]


def english_texts() -> list[str]:
    texts = []
    for name in ENGLISH:
        path = os.path.join(HERE, "data", "pretrain", name)
        with (gzip.open if name.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
            texts += [(r["source"] + "\n" + r["target"]).strip() for r in map(json.loads, f)]
    return texts


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(command: list[str]) -> None:
    """Run one of the project's commands as a user would, showing it first."""
    shown = [os.path.relpath(c, REPO) if c.startswith(REPO) else c for c in command]
    print("$ " + " ".join(["python"] + shown[1:]), flush=True)
    subprocess.run(command, check=True)


def base_model(run_dir: str) -> None:
    from colossal_llama.model.tiny import build_tiny_llama
    from colossal_llama.tokenizer.train import train_llama_tokenizer

    tokenizer, model = os.path.join(run_dir, "base", "tokenizer"), os.path.join(run_dir, "base", "model")
    step("1. base tokenizer: SentencePiece BPE with byte fallback, trained on the bundled English text only")
    if not os.path.exists(os.path.join(tokenizer, "tokenizer.json")):
        train_llama_tokenizer(english_texts(), tokenizer, vocab_size=1200)
    print(f"tokenizer in {tokenizer} (Chinese text falls back to bytes: about 3 tokens per character)")
    step("2. a tiny LLaMA for it (4 layers, hidden 128), built in code")
    if not os.path.exists(os.path.join(model, "config.json")):
        build_tiny_llama(tokenizer, model, layers=4, hidden=128, positions=512, seed=0)
    print(f"model in {model}")


def knowledge_check(run_dir: str) -> list[str]:
    """The probe scores before and after the knowledge stages, as lines of text; also printed."""
    with open(os.path.join(run_dir, "probes.json"), encoding="utf-8") as f:
        probes = json.load(f)
    before, after = probes["pretrain"], probes["replay"]
    lines = ["Loss on held-out questions about the invented facts (nats per character of the answer; lower is "
             "better):", "", "| language | before (after pretraining) | after (injection + replay) | change |",
             "|---|---:|---:|---:|"]
    for category, language in (("fact_en", "English"), ("fact_zh", "Chinese")):
        b, a = before[category]["nats_per_char"], after[category]["nats_per_char"]
        lines.append(f"| {language} | {b:.3f} | {a:.3f} | {a - b:+.3f} ({(a - b) / b:+.0%}) |")
    moved = all(after[c]["nats_per_char"] < before[c]["nats_per_char"] for c in ("fact_en", "fact_zh"))
    lines += ["", "The knowledge stages lowered the loss in both languages." if moved else
              "WARNING: the knowledge stages did not lower the loss in both languages."]
    print("\n".join(lines), flush=True)
    return lines


QUIZ_LABELS = {"start": "start (the base model)", "pretrain": "after pretraining", "replay": "after injection + replay",
               "sft": "after SFT"}


def quiz_check(run_dir: str) -> list[str]:
    """Quiz accuracy before and after the knowledge stages, as lines of text; also printed. A model this small may
    stay near chance: the figures are reported as they are."""
    with open(os.path.join(run_dir, "benchmarks.json"), encoding="utf-8") as f:
        benchmarks = json.load(f)
    overall = benchmarks["start"]["overall"]
    lines = [f"Accuracy on the held-out multiple-choice quiz ({overall['questions']} questions, half English, half "
             f"Chinese; 4 choices, chance {benchmarks['start']['chance']:.2f}):", "",
             "| model | English acc | Chinese acc | acc | acc_norm | acc_letter |", "|---|---:|---:|---:|---:|---:|"]
    for label, title in QUIZ_LABELS.items():
        summary = benchmarks[label]
        files = {os.path.basename(path): s for path, s in summary["files"].items()}
        english, chinese, o = files["quiz_en.jsonl"]["acc"], files["quiz_zh.jsonl"]["acc"], summary["overall"]
        lines.append(f"| {title} | {english:.3f} | {chinese:.3f} | {o['acc']:.3f} | {o['acc_norm']:.3f} | "
                     f"{o['acc_letter']:.3f} |")
    seconds = sum(b["seconds"] for b in benchmarks.values())
    lines += ["", f"The quiz took {seconds:.0f} s of the run ({len(benchmarks)} evaluations)."]
    print("\n".join(lines), flush=True)
    return lines


def chat(run_dir: str) -> list[str]:
    """A greedy answer of the final (SFT) model to each question, streamed to the terminal."""
    from colossal_llama.inference.generation import SamplingSettings, load_for_inference, stream_chat

    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
        last = json.load(f)["stages"][-1]["folder"]
    model, tokenizer = load_for_inference(os.path.join(run_dir, "stages", last, "model"))
    settings = SamplingSettings(max_new_tokens=48, temperature=0.0, repetition_penalty=1.5)  # a tiny model loops without it
    lines = []
    for message in QUESTIONS:
        print(f"you> {message['content']}\nassistant> ", end="", flush=True)
        reply = ""
        for piece in stream_chat(model, tokenizer, [message], settings):
            print(piece, end="", flush=True)
            reply += piece
        print(flush=True)
        lines += [f"- **you**: {message['content']}", f"- **assistant**: {reply.strip()}"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", default=os.path.join(REPO, "runs", "demo"), help="where everything is written")
    args = parser.parse_args(argv)
    run_dir = os.path.abspath(args.run_dir)
    started = time.time()
    base_model(run_dir)

    step("3. the stage recipe: pretrain -> expand + embeddings -> injection -> replay -> sft")
    run([sys.executable, "-m", "colossal_llama.stages", os.path.join(HERE, "recipe.yaml"), "--run_dir", run_dir,
         "--no-report"])

    step("4. knowledge check: held-out questions about the Calvessa Islands, before and after the knowledge stages")
    lines = ["## Knowledge check", ""] + knowledge_check(run_dir) + [""] + quiz_check(run_dir)

    step("5. chat with the final model (greedy; a model this small mostly echoes its training data)")
    lines += ["", "## Chat with the final model", "", *chat(run_dir)]
    with open(os.path.join(run_dir, "notes.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    step("6. plots and report from the run's tensorboard logs")
    run([sys.executable, "-m", "colossal_llama.stages.report", run_dir])
    print(f"\ndone in {(time.time() - started) / 60:.1f} min; open {os.path.join(run_dir, 'report.md')}; "
          f"tensorboard --logdir {os.path.join(run_dir, 'tensorboard')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
