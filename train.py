"""Train a LLaMA-family model on prepared buckets with ColossalAI's Booster.

Not built yet: this shim only says so. Its flags and behaviour are specified
in the training issue; until it lands, prepare data with
prepare_pretrain_dataset.py.
"""

import sys

if __name__ == "__main__":
    print("train.py: not yet implemented (training lands with its own issue); "
          "prepare_pretrain_dataset.py works today.", file=sys.stderr)
    sys.exit(2)
