"""Prepare pretraining data: jsonl {source, target, category} -> packed, bucketed Arrow shards.

    python prepare_pretrain_dataset.py --data_input_dirs DIR[,DIR...] --tokenizer_dir TOK \
        --data_output_dirs OUT [--max_length 4096] [--num_spliced_dataset_bins 10]

A shim over `colossal_llama.data.pretrain.main`; `--help` lists every flag;
installed, the same command is `colossal-llama-prepare-pretrain`.
The import sits under the main guard: worker processes (spawned) re-import
this file and must not load the whole pipeline.
"""

import sys

if __name__ == "__main__":
    from colossal_llama.data.pretrain import main

    sys.exit(main())
