"""Conversation templates: rendering, where each message sits, and export as a Jinja chat_template.

The default "Human/Assistant" template (data-spec section 2), drawn for two
turns (LLaMA-2 separators):

    A chat between ... questions.\\n\\nHuman: <s>Hi</s>Assistant: <s>Hello!</s>Human: <s>Bye</s>Assistant: <s>Bye!</s>
                                          ^open   ^close         ^open ^close
    trained on:                                               [<s>Hello!</s>]                  [<s>Bye!</s>]

`render` returns the text plus, for every message, the character offsets
of its opening and closing separator, so spans come from the message
structure, never from scanning token ids. `chat_template()` writes the same
template as Jinja for the tokenizer, so that
`tokenizer.apply_chat_template(messages, tokenize=True)` gives exactly the
training ids (the leading BOS comes from `{{ bos_token }}`).

`--template hf` uses the tokenizer's own chat_template instead
(`HFChatTemplate`); its spans are found by rendering prefixes of the
conversation (see `conversations.HFChatRecords`).

`TEMPLATES` maps `--template` names to constructors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

DEFAULT_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.\n\n"
)
SEPARATORS = {2: ("<s>", "</s>"), 3: ("<|begin_of_text|>", "<|eot_id|>")}
ROLE_NAMES = ("Human", "Assistant")  # index 0: human, 1: assistant


@dataclass(frozen=True)
class Rendered:
    text: str
    opens: tuple[int, ...]
    """Character offset of each message's opening separator."""
    closes: tuple[int, ...]
    """Character offset of each message's closing separator."""


@dataclass(frozen=True)
class HumanAssistantTemplate:
    """The default template: system text, then `Role: <open>content<close>` per message."""

    open: str
    close: str
    system: str = DEFAULT_SYSTEM
    name: str = "default"

    def render(self, contents: list[str]) -> Rendered:
        """Render messages (alternating human, assistant, ... ; contents only)."""
        parts, opens, closes, length = [self.system], [], [], len(self.system)
        for i, content in enumerate(contents):
            head = ROLE_NAMES[i % 2] + ": "
            opens.append(length + len(head))
            closes.append(opens[-1] + len(self.open) + len(content))
            piece = head + self.open + content + self.close
            parts.append(piece)
            length += len(piece)
        return Rendered("".join(parts), tuple(opens), tuple(closes))

    def chat_template(self) -> str:
        """The template as Jinja for `tokenizer.chat_template`.

        Accepts HF messages ({"role": "user"|"assistant", "content"}) and this
        project's ({"from": "human"|"assistant", "content"});
        `add_generation_prompt` opens an assistant turn for inference.
        """
        s = json.dumps  # a JSON string is a valid Jinja string literal
        return (
            "{{- bos_token + " + s(self.system) + " -}}"
            "{%- for message in messages -%}"
            "{%- set role = (message['role'] if message['role'] is defined else message['from']) | lower -%}"
            "{%- if role == 'user' or role == 'human' -%}"
            "{{- " + s(ROLE_NAMES[0] + ": " + self.open) + " + message['content'] + " + s(self.close) + " -}}"
            "{%- elif role == 'assistant' -%}"
            "{{- " + s(ROLE_NAMES[1] + ": " + self.open) + " + message['content'] + " + s(self.close) + " -}}"
            "{%- else -%}"
            "{{- raise_exception('role must be user, human or assistant, got ' + role) -}}"
            "{%- endif -%}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- " + s(ROLE_NAMES[1] + ": " + self.open) + " -}}{%- endif -%}"
        )


def default_template(llama_version: int, tokenizer=None) -> HumanAssistantTemplate:
    return HumanAssistantTemplate(*SEPARATORS[llama_version])


_LOADED: dict = {}  # per process: tokenizer folder -> HF tokenizer (forked workers inherit it)


@dataclass(frozen=True)
class HFChatTemplate:
    """The tokenizer's own `chat_template` (`--template hf`), rendered by transformers.

    Rendering needs the HF tokenizer; workers get it from the parent (forked)
    or load it from `tokenizer_dir` (spawned).
    """

    tokenizer_dir: str
    name: str = "hf"

    def preload(self, tokenizer) -> None:
        _LOADED[self.tokenizer_dir] = tokenizer

    def release(self) -> None:
        _LOADED.pop(self.tokenizer_dir, None)

    def _tokenizer(self):
        if self.tokenizer_dir not in _LOADED:
            from transformers import AutoTokenizer

            _LOADED[self.tokenizer_dir] = AutoTokenizer.from_pretrained(self.tokenizer_dir, trust_remote_code=False)
        return _LOADED[self.tokenizer_dir]

    def render_messages(self, contents: list[str], add_generation_prompt: bool = False) -> str:
        messages = [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]
        return self._tokenizer().apply_chat_template(messages, tokenize=False,
                                                     add_generation_prompt=add_generation_prompt)

    def chat_template(self) -> str:
        return self._tokenizer().chat_template


def hf_template(llama_version: int, tokenizer=None) -> HFChatTemplate:
    if tokenizer is None or not tokenizer.chat_template:
        from colossal_llama.errors import TokenizerError

        raise TokenizerError("--template hf: the tokenizer has no chat_template")
    return HFChatTemplate(str(tokenizer.name_or_path))


TEMPLATES = {"default": default_template, "hf": hf_template}
