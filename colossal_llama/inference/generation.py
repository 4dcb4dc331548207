"""Generation from an HF model folder: batched completions and a streaming chat.

    model, tokenizer = load_for_inference("runs/demo/stages/05-sft/model")
    greedy = SamplingSettings(max_new_tokens=64, temperature=0)
    generate(model, tokenizer, ["Where is Calvessa?"], greedy)            # one user message, chat template
    generate(model, tokenizer, ["Once upon a time"], greedy, chat=False)  # raw completion
    for piece in stream_chat(model, tokenizer, [{"role": "user", "content": "Hi"}], greedy):
        print(piece, end="", flush=True)

Chat prompts are `apply_chat_template(..., add_generation_prompt=True)`: with the
template SFT preparation exports, exactly the training ids up to the reply's
opening separator. Batches are left-padded with an attention mask, from which
`model.generate` (transformers 4.51) derives the position ids (cumsum - 1), so
under greedy decoding a completion does not depend on the rest of its batch.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from colossal_llama.errors import InferenceError
from colossal_llama.model.hub import resolve_model_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
EXTRA_STOP_TOKENS = ("<|eot_id|>", "<|end_of_text|>")
_UNSETTLED_TAIL = re.compile(r"[\s\ufffd]+$")  # trailing spaces and partial characters may still change
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # a SentencePiece byte-fallback token


def load_for_inference(model_dir: str, device: str | None = None, dtype: str | None = None,
                       flag: str = "--model_dir") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model in eval mode, tokenizer) from an HF folder. device: default cuda when available,
    else cpu; dtype: bf16, fp16 or fp32, default bf16 on cuda and fp32 on cpu; flag: how the
    caller's user named the model (in messages)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = resolve_model_dir(model_dir, flag, InferenceError)  # a folder, or a hub id in the cache
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise InferenceError(f"{model_dir}: not a model folder (no config.json)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InferenceError(f"device {device!r}: CUDA is not available on this machine")
    dtype = dtype or ("bf16" if device.startswith("cuda") else "fp32")
    if dtype not in DTYPES:
        raise InferenceError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    from colossal_llama.safe_loading import safe_loading
    from colossal_llama.tokenizer.layout import folder_problem

    problem = folder_problem(model_dir)  # a folder AutoTokenizer would load as another tokenizer
    if problem:
        raise InferenceError(f"{model_dir}: {problem}")
    try:
        with safe_loading() as refused:  # .bin weights: plain tensors only, never a TorchScript archive
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
            # sdpa, as training: transformers 4.51 otherwise picks eager attention for these folders, 13x slower
            # on the quiz of the demo with packed 4-D masks (9.7 s against 0.73 s)
            model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=getattr(torch, DTYPES[dtype]),
                                                         attn_implementation="sdpa", trust_remote_code=False).to(device)
    except (OSError, ValueError, RuntimeError) as e:
        raise InferenceError(f"{model_dir}: {refused[0] if refused else f'cannot load the model: {e}'}") from e
    return model.eval(), tokenizer


@dataclass
class SamplingSettings:
    """How tokens are picked: temperature 0 means greedy, top_k 0 and top_p 1 turn those filters off;
    a seed seeds torch before generating, so that sampling is reproducible."""

    max_new_tokens: int = 128
    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 0.9
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        rules = [
            ("max_new_tokens", isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, "an integer >= 1"),
            ("temperature", self.temperature >= 0, ">= 0 (0 means greedy)"),
            ("top_k", isinstance(self.top_k, int) and self.top_k >= 0, "an integer >= 0 (0 turns it off)"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("repetition_penalty", self.repetition_penalty > 0, "> 0 (1 turns it off)"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise InferenceError(f"{name} must be {rule}, got {getattr(self, name)!r}")

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `model.generate`: greedy when temperature is 0, else sampling."""
        kwargs = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if self.temperature == 0:  # None: ignore sampling values from the folder's generation_config.json
            return {**kwargs, "do_sample": False, "temperature": None, "top_k": None, "top_p": None}
        return {**kwargs, "do_sample": True, "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


def require_chat_template(tokenizer) -> None:
    """Raise InferenceError when the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise InferenceError(f"{tokenizer.name_or_path}: the model folder has no chat template (SFT training "
                             "exports one with the model); use raw completion (--no-chat) instead")


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of `messages` ({"role": "user"|"assistant", "content"}) with the assistant turn opened."""
    from jinja2.exceptions import TemplateError

    require_chat_template(tokenizer)
    try:
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    except TemplateError as e:
        raise InferenceError(f"{tokenizer.name_or_path}: the chat template rejects the messages: {e}") from e


def stop_token_ids(tokenizer) -> list[int]:
    """eos_token_id, plus <|eot_id|> and <|end_of_text|> where the vocabulary has them as single tokens."""
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    for token in EXTRA_STOP_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id and token_id not in ids:
            ids.append(token_id)
    return ids


def _fits(model, length: int, max_new_tokens: int) -> bool:
    """Whether `length` prompt tokens plus max_new_tokens fit the model's max_position_embeddings."""
    limit = getattr(model.config, "max_position_embeddings", None)
    return limit is None or length + max_new_tokens <= limit


def _too_long(model, what: str, length: int, max_new_tokens: int) -> InferenceError:
    return InferenceError(f"{what} is {length} tokens: with max_new_tokens={max_new_tokens} it exceeds the "
                          f"model's max_position_embeddings ({model.config.max_position_embeddings})")


def _until_stop(ids: list[int], stops: list[int]) -> list[int]:
    return ids[: next((i for i, t in enumerate(ids) if t in stops), len(ids))]


def _generate_ids(model, tokenizer, batch: list[list[int]], settings: SamplingSettings, **extra) -> list[list[int]]:
    """The new ids of each prompt of `batch` (left-padded together), cut before the first stop token."""
    import torch

    stops = stop_token_ids(tokenizer)
    pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    width = max(map(len, batch))
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=model.device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=model.device)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=mask, pad_token_id=pad, eos_token_id=stops or None,
                             **settings.generate_kwargs(), **extra)
    return [_until_stop(row[width:].tolist(), stops) for row in out]


def _seed(settings: SamplingSettings) -> None:
    if settings.seed is not None:
        import torch

        torch.manual_seed(settings.seed)


def generate(model, tokenizer, prompts: list[str], settings: SamplingSettings, chat: bool = True,
             batch_size: int = 8) -> list[str]:
    """The completion (new text, stripped) of each prompt, in order. chat=True sends each prompt as one
    user message through the chat template; chat=False encodes it as is (BOS as the tokenizer adds it)."""
    if batch_size < 1:
        raise InferenceError(f"batch_size must be >= 1, got {batch_size}")
    encoded = [chat_prompt_ids(tokenizer, [{"role": "user", "content": p}]) if chat else tokenizer(p)["input_ids"]
               for p in prompts]
    for n, ids in enumerate(encoded, start=1):
        if not ids:
            raise InferenceError(f"prompt {n} is empty")
        if not _fits(model, len(ids), settings.max_new_tokens):
            raise _too_long(model, f"prompt {n}", len(ids), settings.max_new_tokens)
    _seed(settings)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths together: less padding
    completions = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        for i, ids in zip(batch, _generate_ids(model, tokenizer, [encoded[i] for i in batch], settings)):
            completions[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return completions


def fit_chat_prompt(model, tokenizer, messages: list[dict], max_new_tokens: int) -> tuple[list[int], list[dict]]:
    """(prompt ids, messages kept): the oldest user/assistant pairs are dropped until the prompt plus
    max_new_tokens fits max_position_embeddings. InferenceError if the last message does not fit alone."""
    if not messages or messages[-1].get("role") != "user":
        raise InferenceError("the last message of a chat must be a user message")
    kept = list(messages)
    ids = chat_prompt_ids(tokenizer, kept)
    while len(kept) > 2 and not _fits(model, len(ids), max_new_tokens):
        kept = kept[2:]
        ids = chat_prompt_ids(tokenizer, kept)
    if not _fits(model, len(ids), max_new_tokens):
        raise _too_long(model, "the message", len(ids), max_new_tokens)
    return ids, kept


class _TokenQueue:
    """For `model.generate` on one prompt: the streamer that queues each step's new ids, and the
    stopping criterion that ends the generation once `cancel` is set."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.cancel = threading.Event()
        self._prompt_seen = False

    def put(self, value) -> None:
        if self._prompt_seen:  # the first call brings the prompt
            self.queue.put(value.flatten().tolist())
        self._prompt_seen = True

    def end(self) -> None:
        """Nothing: the generation thread queues the end marker, also when generate fails."""

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device)


def _settled(tokenizer, ids: list[int]) -> list[int]:
    """`ids` less its trailing byte-fallback tokens: a run of bytes has its text once it ends
    (each byte of an invalid run decodes to U+FFFD)."""
    end = len(ids)
    while end and _BYTE_PIECE.fullmatch(tokenizer.convert_ids_to_tokens(ids[end - 1]) or ""):
        end -= 1
    return ids[:end]


def stream_chat(model, tokenizer, messages: list[dict], settings: SamplingSettings) -> Iterator[str]:
    """The reply to `messages` (oldest turns dropped to fit, see `fit_chat_prompt`), piece by piece.

    The pieces join to the stripped decode of the reply, as `generate` gives it: text that may
    still change (trailing spaces, unfinished characters) is held back. Closing the iterator
    early stops the generation.
    """
    from transformers import StoppingCriteriaList

    ids, _ = fit_chat_prompt(model, tokenizer, messages, settings.max_new_tokens)
    stops, tokens, failure = stop_token_ids(tokenizer), _TokenQueue(), []

    def run() -> None:
        try:
            _generate_ids(model, tokenizer, [ids], settings, streamer=tokens,
                          stopping_criteria=StoppingCriteriaList([tokens]))
        except BaseException as e:  # raised again in the caller's thread
            failure.append(e)
        finally:
            tokens.queue.put(None)

    _seed(settings)
    thread = threading.Thread(target=run, name="generate", daemon=True)
    thread.start()
    reply, emitted = [], ""
    try:
        for step in iter(tokens.queue.get, None):
            reply += step
            text = tokenizer.decode(_settled(tokenizer, _until_stop(reply, stops)), skip_special_tokens=True)
            settled = _UNSETTLED_TAIL.sub("", text.lstrip())
            if len(settled) > len(emitted) and settled.startswith(emitted):
                yield settled[len(emitted) :]
                emitted = settled
        if failure:
            raise failure[0]
        final = tokenizer.decode(_until_stop(reply, stops), skip_special_tokens=True).strip()
        if len(final) > len(emitted):
            yield final[len(emitted) :]
    finally:
        tokens.cancel.set()
        thread.join()
