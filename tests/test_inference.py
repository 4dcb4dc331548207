"""Inference: batched greedy generation, chat prompts equal to the training ids, streaming, sampling
settings, history truncation and the two command lines (applications/inference/)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from colossal_llama.data.templates import default_template
from colossal_llama.errors import InferenceError
from colossal_llama.inference.generation import (SamplingSettings, chat_prompt_ids, fit_chat_prompt, generate, load_for_inference, stop_token_ids, stream_chat)
from helpers import REPO, reference_sft

GREEDY = SamplingSettings(max_new_tokens=8, temperature=0)
PROMPTS = ["Hi", "Where is the island of Calvessa, and how many people live there today?", "几个岛？"]
LONG_TURN = "Tell me everything about the six islands of the Serin Sea, their harbours and their people. " * 2


def build_chat_model(tokenizer_dir: str, out_dir: str, llama_version: int = 2, positions: int = 256) -> str:
    """A tiny LLaMA with the project's chat template, weights drawn wide (std 0.3 instead of 0.02)
    so that greedy completions depend on the prompt instead of being the same few tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from colossal_llama.model.tiny import build_tiny_llama

    build_tiny_llama(tokenizer_dir, out_dir, layers=2, hidden=64, positions=positions)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0, 0.3)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    tokenizer.chat_template = default_template(llama_version).chat_template()
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module", params=[2, 3], ids=["sp-llama2", "bpe-llama3"])
def chat_model(request, tmp_path_factory, sp_tokenizer_dir, llama3_tokenizer_dir):
    """(model dir, model, tokenizer, llama_version) for both tokenizer kinds."""
    tokenizer_dir = sp_tokenizer_dir if request.param == 2 else llama3_tokenizer_dir
    out = build_chat_model(tokenizer_dir, str(tmp_path_factory.mktemp("chat_model")), request.param)
    model, tokenizer = load_for_inference(out, device="cpu")
    return out, model, tokenizer, request.param


@pytest.fixture(scope="module")
def sp_chat_model(tmp_path_factory, sp_tokenizer_dir):
    """(model dir, model, tokenizer) with the SentencePiece tokenizer, for the command lines."""
    out = build_chat_model(sp_tokenizer_dir, str(tmp_path_factory.mktemp("sp_chat_model")))
    return (out, *load_for_inference(out, device="cpu"))


def argmax_completion(model, tokenizer, ids: list[int], max_new_tokens: int) -> str:
    """Greedy decoding by hand: full forward, argmax, append, until a stop token."""
    new, stops = [], stop_token_ids(tokenizer)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if next_id in stops:
                break
            new.append(next_id)
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def user(content: str) -> dict:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "raw"])
def test_batched_greedy_equals_alone_and_manual_loop(chat_model, chat):
    _, model, tokenizer, _ = chat_model
    batched = generate(model, tokenizer, PROMPTS, GREEDY, chat=chat)
    alone = [generate(model, tokenizer, [p], GREEDY, chat=chat)[0] for p in PROMPTS]
    assert batched == alone
    assert all(batched) and len(set(batched)) == len(PROMPTS)  # non-trivial: completions differ per prompt
    assert generate(model, tokenizer, PROMPTS, GREEDY, chat=chat, batch_size=2) == alone
    ids = chat_prompt_ids(tokenizer, [user(PROMPTS[1])]) if chat else tokenizer(PROMPTS[1])["input_ids"]
    assert alone[1] == argmax_completion(model, tokenizer, ids, GREEDY.max_new_tokens)


def test_chat_prompt_ids_are_the_training_ids(chat_model):
    _, _, tokenizer, version = chat_model
    template = default_template(version)
    conversation = ["Where is Calvessa?", "In the Serin Sea.", "几个岛？"]
    messages = [user(conversation[0]), assistant(conversation[1]), user(conversation[2])]
    ids = chat_prompt_ids(tokenizer, messages)
    prompt_text = tokenizer.bos_token + template.render(conversation).text + "Assistant: " + template.open
    assert ids == tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    # the data-spec oracle: the training ids of the conversation, up to the opening of the reply to predict
    train_messages = [{"from": ("human", "assistant")[i % 2], "content": c}
                      for i, c in enumerate(conversation + ["六个。"])]
    train_ids, labels = reference_sft(tokenizer, train_messages, 1024, version)
    reply_open = max(i for i, label in enumerate(labels) if label == -100) + 1
    assert ids == train_ids[: reply_open + 1]


def test_chat_needs_a_template(tiny_model_dir):
    model, tokenizer = load_for_inference(tiny_model_dir, device="cpu")
    with pytest.raises(InferenceError, match=r"no chat template.*--no-chat"):
        chat_prompt_ids(tokenizer, [user("hi")])
    with pytest.raises(InferenceError, match=r"no chat template.*--no-chat"):
        generate(model, tokenizer, ["hi"], GREEDY)


def test_stop_tokens(chat_model):
    _, _, tokenizer, version = chat_model
    expected = [tokenizer.eos_token_id] + ([tokenizer.convert_tokens_to_ids("<|eot_id|>")] if version == 3 else [])
    assert stop_token_ids(tokenizer) == expected


def test_stream_chat_joins_to_the_greedy_reply(chat_model):
    _, model, tokenizer, _ = chat_model
    settings = SamplingSettings(max_new_tokens=16, temperature=0)
    for prompt in PROMPTS:
        pieces = list(stream_chat(model, tokenizer, [user(prompt)], settings))
        assert len(pieces) > 1  # streamed, not one piece at the end
        assert "".join(pieces) == generate(model, tokenizer, [prompt], settings)[0]


def test_closing_the_stream_early_stops_generation(chat_model):
    _, model, tokenizer, _ = chat_model
    settings = SamplingSettings(max_new_tokens=64, temperature=0, repetition_penalty=1.5)
    steps = []
    hook = model.register_forward_hook(lambda *_: steps.append(1))
    try:
        stream = stream_chat(model, tokenizer, [user(PROMPTS[1])], settings)
        next(stream)
        stream.close()  # joins the generation thread, which stops at its next step
        stopped_after = len(steps)
        steps.clear()
        list(stream_chat(model, tokenizer, [user(PROMPTS[1])], settings))
    finally:
        hook.remove()
    assert stopped_after < 8 and len(steps) == settings.max_new_tokens


def test_seeded_sampling_is_reproducible(chat_model):
    _, model, tokenizer, _ = chat_model
    sample = lambda seed: generate(model, tokenizer, PROMPTS, SamplingSettings(  # noqa: E731
        max_new_tokens=8, temperature=1.0, top_k=0, top_p=1.0, seed=seed))
    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    stream = lambda: "".join(stream_chat(model, tokenizer, [user("Hi")], SamplingSettings(  # noqa: E731
        max_new_tokens=8, seed=5)))
    assert stream() == stream()


@pytest.mark.parametrize("option, value", [("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("top_k", -1),
                                           ("repetition_penalty", 0.0), ("max_new_tokens", 0)])
def test_settings_validation_names_the_option(option, value):
    with pytest.raises(InferenceError, match=rf"^{option} must be"):
        SamplingSettings(**{option: value})


def test_generate_kwargs():
    assert SamplingSettings(temperature=0).generate_kwargs()["do_sample"] is False
    kwargs = SamplingSettings(temperature=0.5, top_k=0, top_p=0.8).generate_kwargs()
    assert (kwargs["do_sample"], kwargs["temperature"], kwargs["top_k"], kwargs["top_p"]) == (True, 0.5, 0, 0.8)


def test_long_history_is_trimmed_to_fit(tmp_path, sp_chat_model, sp_tokenizer_dir):
    _, _, tokenizer = sp_chat_model
    history = [user(LONG_TURN), assistant(LONG_TURN), user("Where is Calvessa?"), assistant("In the Serin Sea."),
               user("几个岛？")]
    fits = len(chat_prompt_ids(tokenizer, history[2:])) + GREEDY.max_new_tokens
    assert len(chat_prompt_ids(tokenizer, history)) + GREEDY.max_new_tokens > fits
    model, tokenizer = load_for_inference(build_chat_model(sp_tokenizer_dir, str(tmp_path), positions=fits), "cpu")
    assert fit_chat_prompt(model, tokenizer, history, GREEDY.max_new_tokens)[1] == history[2:]
    reply = "".join(stream_chat(model, tokenizer, history, GREEDY))
    assert reply and reply == "".join(stream_chat(model, tokenizer, history[2:], GREEDY))
    with pytest.raises(InferenceError, match=r"exceeds the model's max_position_embeddings \(%d\)" % fits):
        list(stream_chat(model, tokenizer, [user(LONG_TURN)], GREEDY))
    with pytest.raises(InferenceError, match=r"prompt 2 is \d+ tokens"):
        generate(model, tokenizer, ["hi", LONG_TURN], GREEDY)


def test_load_errors_name_the_folder(tmp_path, sp_tokenizer_dir):
    with pytest.raises(InferenceError, match=f"--model_dir {tmp_path / 'missing'}: folder does not exist"):
        load_for_inference(str(tmp_path / "missing"))
    with pytest.raises(InferenceError, match=rf"{sp_tokenizer_dir}: not a model folder \(no config.json\)"):
        load_for_inference(sp_tokenizer_dir)


def run_script(script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, f"applications/inference/{script}", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)


def test_generate_cli_writes_jsonl(tmp_path, sp_chat_model):
    model_dir, model, tokenizer = sp_chat_model
    out = tmp_path / "out.jsonl"
    done = run_script("generate.py", "--model_dir", model_dir, "--prompt", PROMPTS[0], "--prompt", PROMPTS[1],
                      "--output", str(out), "--temperature", "0", "--max_new_tokens", "8", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = generate(model, tokenizer, PROMPTS[:2], GREEDY)
    assert rows == [{"prompt": p, "completion": c} for p, c in zip(PROMPTS[:2], expected)]
    assert f"[2] completion: {expected[1]}" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left behind


def test_chat_cli_streams_and_resets(sp_chat_model):
    model_dir, model, tokenizer = sp_chat_model
    done = run_script("chat.py", "--model_dir", model_dir, "--temperature", "0", "--max_new_tokens", "8",
                      stdin="hello\n/reset\n\nhi\n")
    assert done.returncode == 0, done.stderr
    assert model_dir in done.stdout and "/exit" in done.stdout  # the banner
    replies = re.findall(r"assistant> (.*?)\nyou> ", done.stdout, re.S)
    # after /reset, "hi" is answered without the first turn: as a single message
    assert replies == generate(model, tokenizer, ["hello", "hi"], GREEDY)


def test_chat_cli_needs_a_chat_template(tiny_model_dir, monkeypatch, capsys):
    from colossal_llama.inference.chat import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    assert main(["--model_dir", tiny_model_dir]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "chat template" in err and err.count("\n") == 1
