"""Interactive chat with an SFT export: the reply is printed as it is generated.

    colossal-llama-chat --model_dir DIR ...    # the installed command; in a checkout also:
    python applications/inference/chat.py --model_dir runs/demo/stages/05-sft/model
    python applications/inference/chat.py --model_dir runs/demo/stages/05-sft/model \\
        --temperature 0 --max_new_tokens 256
    printf 'hello\\nhow are you?\\n' | python applications/inference/chat.py --model_dir DIR  # piped input

Type a message after `you> `. The conversation is kept (the oldest turns are
dropped when it no longer fits the model's context); `/reset` clears it,
`/exit` or Ctrl-D quits. Ctrl-C while a reply streams stops that reply.
The folder needs a chat template (SFT training exports one); for other
models use generate.py --no-chat.
"""

from __future__ import annotations

import sys

from colossal_llama.errors import InferenceError
from colossal_llama.inference.cli import cli_parser, run_cli, settings_from_args
from colossal_llama.inference.generation import load_for_inference, require_chat_template, stream_chat


def main(argv: list[str] | None = None) -> int:
    args = cli_parser(__doc__).parse_args(argv)

    def run() -> int:
        settings = settings_from_args(args)
        model, tokenizer = load_for_inference(args.model_dir, args.device, args.dtype)
        require_chat_template(tokenizer)
        print(f"chat with {args.model_dir} on {model.device}: /reset clears the history, /exit or Ctrl-D quits")
        history: list[dict] = []
        while True:
            try:
                text = input("you> ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if text == "/exit":
                return 0
            if text == "/reset":
                history = []
                print("(history cleared)")
                continue
            if not text:
                continue
            messages = history + [{"role": "user", "content": text}]
            print("assistant> ", end="", flush=True)
            pieces = []
            try:
                for piece in stream_chat(model, tokenizer, messages, settings):
                    print(piece, end="", flush=True)
                    pieces.append(piece)
            except InferenceError as e:  # this message cannot be answered; the chat goes on
                print(f"\nerror: {e}", file=sys.stderr)
                continue
            except KeyboardInterrupt:
                print(" [stopped; not kept in the history]")
                continue
            print()
            history = messages + [{"role": "assistant", "content": "".join(pieces)}]

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
