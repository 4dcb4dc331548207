"""Prepare SFT data: conversations {messages: [{from, content}]} -> Arrow shards.

Not built yet: this shim only says so. SFT data preparation lands with its own
issue; pretraining data works today through prepare_pretrain_dataset.py.
"""

import sys

if __name__ == "__main__":
    print("prepare_sft_dataset.py: not yet implemented (SFT data preparation lands with its own issue); "
          "prepare_pretrain_dataset.py works today.", file=sys.stderr)
    sys.exit(2)
