"""Prepare SFT data: conversations {messages: [{from, content}]} -> bucketed Arrow shards.

    python prepare_sft_dataset.py --data_input_dirs DIR[,DIR...] --tokenizer_dir TOK \
        --data_output_dirs OUT --llama_version 2 [--max_length 4096] [--template default]

Only assistant replies carry labels. A shim over `colossal_llama.data.sft.main`;
`--help` lists every flag; installed, the same command is
`colossal-llama-prepare-sft`. The import sits under the main guard: worker
processes (when spawned) re-import this file and must not load the pipeline.
"""

import sys

if __name__ == "__main__":
    from colossal_llama.data.sft import main

    sys.exit(main())
