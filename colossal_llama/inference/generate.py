"""Batch generation with an exported model folder: prompts in, completions out.

    colossal-llama-generate --model_dir DIR ...    # the installed command; in a checkout also:
    # through the chat template of an SFT export
    python applications/inference/generate.py --model_dir runs/demo/stages/05-sft/model \\
        --prompt "Where is Calvessa?" --prompt "How many islands are there?"
    # raw completion (pretrained models, folders without a chat template), greedy, saved as jsonl
    python applications/inference/generate.py --model_dir runs/demo/stages/01-pretrain/model --no-chat \\
        --prompts_file prompts.txt --temperature 0 --output completions.jsonl

--prompts_file: a .jsonl (or .jsonl.gz) file holds one {"prompt": ...} object
per line; any other file holds one prompt per non-blank line. A bad line is
reported as `error: FILE:LINE: reason`, as by every command. --output writes one
{"prompt", "completion"} object per line, in prompt order.
"""

from __future__ import annotations

import json
import os
import sys

from colossal_llama.errors import DataError, InferenceError
from colossal_llama.inference.cli import cli_parser, run_cli, settings_from_args
from colossal_llama.inference.generation import generate, load_for_inference
from colossal_llama.jsonl import line_error, read_jsonl, read_lines
from colossal_llama.outputs import replace_file


def _jsonl_prompts(path: str) -> list[str]:
    prompts = []
    for number, record in read_jsonl(path):
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise line_error(path, number, 'expected an object with a non-empty string "prompt"')
        prompts.append(prompt)
    return prompts


def read_prompts(path: str) -> list[str]:
    """The prompts of a .jsonl(.gz) file ({"prompt": ...} per line) or a text file (one per non-blank line).

    Raises:
        InferenceError: `FILE:LINE: reason` for a bad line; a file that cannot be read or holds no prompts.
    """
    try:  # the shared reader's DataError, as the InferenceError this command reports
        is_jsonl = path.endswith((".jsonl", ".jsonl.gz"))
        prompts = _jsonl_prompts(path) if is_jsonl else [text for _, text in read_lines(path)]
    except DataError as e:
        raise InferenceError(str(e)) from None
    if not prompts:
        raise InferenceError(f"--prompts_file {path}: no prompts")
    return prompts


def write_jsonl_atomic(path: str, rows: list[dict]) -> None:
    """`rows` as JSON Lines in `path`, replaced whole: never a half-written file."""
    replace_file(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    source.add_argument("--prompts_file", help=".jsonl with {\"prompt\": ...} per line, else one prompt per line")
    parser.add_argument("--no-chat", dest="chat", action="store_false",
                        help="encode prompts as raw text instead of a user message of the chat template")
    parser.add_argument("--output", help="write {\"prompt\", \"completion\"} jsonl lines here")
    parser.add_argument("--batch_size", type=int, default=8, help="prompts generated together; default: %(default)s")
    args = parser.parse_args(argv)

    def run() -> int:
        settings = settings_from_args(args)
        prompts = args.prompt or read_prompts(args.prompts_file)
        if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
            raise InferenceError(f"--output {args.output}: its folder does not exist")
        model, tokenizer = load_for_inference(args.model_dir, args.device, args.dtype)
        completions = generate(model, tokenizer, prompts, settings, chat=args.chat, batch_size=args.batch_size)
        for number, (prompt, completion) in enumerate(zip(prompts, completions), start=1):
            print(f"[{number}] prompt: {prompt}\n[{number}] completion: {completion}\n", flush=True)
        if args.output:
            write_jsonl_atomic(args.output, [{"prompt": p, "completion": c} for p, c in zip(prompts, completions)])
            print(f"wrote {len(prompts)} completions to {args.output}", file=sys.stderr)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
