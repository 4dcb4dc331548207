"""Streaming chat: a shim over `colossal_llama.inference.chat` (installed as `colossal-llama-chat`).

    colossal-llama-chat --model_dir DIR ...    # the installed command; in a checkout also:
    python applications/inference/chat.py --model_dir runs/demo/stages/05-sft/model
    python applications/inference/chat.py --model_dir runs/demo/stages/05-sft/model \\
        --temperature 0 --max_new_tokens 256
    printf 'hello\\nhow are you?\\n' | python applications/inference/chat.py --model_dir DIR  # piped input

`--help` lists every option; the code is in colossal_llama/inference/chat.py.
"""

import sys

if __name__ == "__main__":
    from colossal_llama.inference.chat import main

    sys.exit(main())
