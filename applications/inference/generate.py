"""Batch generation: a shim over `colossal_llama.inference.generate` (installed as `colossal-llama-generate`).

    colossal-llama-generate --model_dir DIR ...    # the installed command; in a checkout also:
    # through the chat template of an SFT export
    python applications/inference/generate.py --model_dir runs/demo/stages/05-sft/model \\
        --prompt "Where is Calvessa?" --prompt "How many islands are there?"
    # raw completion (pretrained models, folders without a chat template), greedy, saved as jsonl
    python applications/inference/generate.py --model_dir runs/demo/stages/01-pretrain/model --no-chat \\
        --prompts_file prompts.txt --temperature 0 --output completions.jsonl

`--help` lists every option; the code is in colossal_llama/inference/generate.py.
"""

import sys

if __name__ == "__main__":
    from colossal_llama.inference.generate import main

    sys.exit(main())
