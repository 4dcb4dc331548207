"""SFT data preparation: conversations -> bucketed Arrow shards, only assistant replies trained.

    python prepare_sft_dataset.py --data_input_dirs data/sft --tokenizer_dir tokenizer/ \\
        --data_output_dirs out/ --llama_version 2 --max_length 4096

The driver is `prepare.prepare_dataset` (the same map, packing, buckets and
manifest as pretraining); this module adds the conversation record kind and
writes the tokenizer with the template as its `chat_template` to
`<out>/tokenizer`, so that `apply_chat_template(messages, tokenize=True)`
reproduces the training ids.
"""

from __future__ import annotations

import os

from colossal_llama.config import SftDataConfig, parse_sft_data_args
from colossal_llama.data.conversations import HFChatRecords, SftRecords
from colossal_llama.data.prepare import log, prepare_dataset, run_cli, with_tokenizer_folder
from colossal_llama.data.templates import SEPARATORS, TEMPLATES, HFChatTemplate, HumanAssistantTemplate
from colossal_llama.errors import ConfigError, TokenizerError
from colossal_llama.tokenizer.encoder import SlowEncoder
from colossal_llama.tokenizer.folder import save_tokenizer

ROUND_TRIP_SAMPLE = [  # short, so that it fits small max_length values too
    {"role": "user", "content": "Where is Calvessa?"},
    {"role": "assistant", "content": "In the Serin Sea."},
    {"role": "user", "content": "几个岛？"},
    {"role": "assistant", "content": "六个。"},
]


def ensure_separator(tokenizer, text: str, option: str) -> int:
    """The id of separator `text`, recognised as one special token even right after content.

    LLaMA-2 folders may register `</s>` as a normalized token, which then is
    not found directly after text; it is registered again as a special token
    with normalized=False (data-spec section 2).

    Raises:
        TokenizerError: the vocabulary has no such token.
    """
    from transformers import AddedToken

    token_id = tokenizer.convert_tokens_to_ids(text)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise TokenizerError(f"the tokenizer has no {text!r} token, which {option} uses as a separator")
    ids = tokenizer("a" + text + "b", add_special_tokens=False)["input_ids"]
    if ids.count(token_id) != 1 or token_id not in tokenizer.all_special_ids:
        tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(text, special=True, normalized=False)]},
                                     replace_additional_special_tokens=False)
    return token_id


def detect_llama_version(tokenizer) -> int:
    """The LLaMA version whose separators `tokenizer` has, for the default template.

    3 when it has both `<|begin_of_text|>` and `<|eot_id|>`; 2 when its
    bos/eos tokens are `<s>`/`</s>`.

    Raises:
        TokenizerError: neither; the message asks for --llama_version.
    """
    vocab = tokenizer.get_vocab()
    if all(token in vocab for token in SEPARATORS[3]):
        return 3
    if (tokenizer.bos_token, tokenizer.eos_token) == SEPARATORS[2]:
        return 2
    raise TokenizerError(
        f"cannot tell the LLaMA version of the tokenizer in {tokenizer.name_or_path}: it has no "
        f"{SEPARATORS[3][0]!r} and {SEPARATORS[3][1]!r} tokens (LLaMA-3), and its bos/eos tokens are "
        f"{tokenizer.bos_token!r}/{tokenizer.eos_token!r}, not {SEPARATORS[2][0]!r}/{SEPARATORS[2][1]!r} (LLaMA-2); "
        "pass --llama_version 2 or 3 (the separators to use), or --template hf for the tokenizer's own chat_template")


def version_hint(tokenizer, given: int) -> str:
    """What to tell a user whose --llama_version does not fit the tokenizer."""
    try:
        detected = detect_llama_version(tokenizer)
    except TokenizerError:
        return "; pass the --llama_version whose separators the tokenizer has, or --template hf"
    if detected == given:
        return ""
    return (f"; the tokenizer looks like a LLaMA-{detected} tokenizer: pass --llama_version {detected} "
            "(or leave the flag out to detect it)")


class SftJob:
    """The SFT part of a preparation (see `prepare.prepare_dataset`).

    Without --llama_version, the default template's version is detected from
    the tokenizer and written into `config`, so the manifest records it as if
    it had been given.
    """

    name = "sft"

    def __init__(self, config: SftDataConfig):
        if config.template not in TEMPLATES:
            raise ConfigError(f"--template must be one of {sorted(TEMPLATES)}, got {config.template!r}")
        self.config = config

    def prepare_tokenizer(self, tokenizer) -> None:
        if self.config.template == "default" and self.config.llama_version is None:
            self.config.llama_version = detect_llama_version(tokenizer)
        self.template = TEMPLATES[self.config.template](self.config.llama_version, tokenizer)
        if isinstance(self.template, HumanAssistantTemplate):
            option = f"--llama_version {self.config.llama_version}"
            try:
                for separator in (self.template.open, self.template.close):
                    ensure_separator(tokenizer, separator, option)
            except TokenizerError as exc:
                raise TokenizerError(f"{exc}{version_hint(tokenizer, self.config.llama_version)}") from None
        else:
            self.template.preload(tokenizer)  # forked workers render with the parent's tokenizer

    def make_kind(self, tokenizer, info):
        self.info = info
        if isinstance(self.template, HumanAssistantTemplate):
            return SftRecords(self.template, self.config.max_length, self.config.category)
        return HFChatRecords(self.template, self.config.max_length, self.config.category)

    def finish(self, folder: str, tokenizer, kind) -> dict:
        """Save the tokenizer with the template as chat_template; check the round trip."""
        save_tokenizer(tokenizer, os.path.join(folder, "tokenizer"), chat_template=self.template.chat_template())
        same = round_trip_ok(tokenizer, kind, self.info)
        if isinstance(self.template, HFChatTemplate):
            self.template.release()
        if same is False:
            log("warning: apply_chat_template on the exported tokenizer does not give the training ids "
                "for this tokenizer (see manifest chat_template.round_trip)")
        return {"chat_template": {"tokenizer_dir": "tokenizer", "template": self.template.name,
                                  "llama_version": self.config.llama_version, "round_trip": same}}


def round_trip_ok(tokenizer, kind, info) -> bool | None:
    """Does `apply_chat_template(messages, tokenize=True)` equal the training ids of a sample?

    None when max_length is too small for even one turn of the sample.
    """
    contents = tuple(m["content"] for m in ROUND_TRIP_SAMPLE)
    batch = kind.tokenize([(contents, False)], SlowEncoder(tokenizer=tokenizer), info)
    if not batch.kept:
        return None
    kept = ROUND_TRIP_SAMPLE[: 2 * batch.stats["turns_kept"]]  # the turns that fit max_length
    return tokenizer.apply_chat_template(kept, tokenize=True) == batch.ids.tolist()


def prepare_sft_dataset(config: SftDataConfig) -> dict:
    """Prepare SFT data (see `prepare.prepare_dataset`); returns the manifest."""
    config = with_tokenizer_folder(config)  # the job fills in a detected llama_version: in this copy only
    return prepare_dataset(config, SftJob(config))


def main(argv: list[str] | None = None) -> int:
    return run_cli(parse_sft_data_args, prepare_sft_dataset, argv)
