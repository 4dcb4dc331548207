"""Train a LLaMA-family model on prepared buckets with ColossalAI's Booster.

    python train.py --plugin ddp --pretrained model --dataset out/arrow/part-00000 --mixed_precision fp32
    colossalai run --nproc_per_node 8 train.py --config stage1.yaml
    torchrun --nproc_per_node 2 train.py --plugin ddp ...

A shim kept for existing launch scripts: the same command line, installed with the package, is
`python -m colossal_llama.training` (what the stage runner launches, `-m` for torchrun and
colossalai run too) and `colossal-llama-train`. Every flag: `python train.py --help`; the
library: colossal_llama/training/.
"""

import sys

if __name__ == "__main__":
    from colossal_llama.training.cli import main

    sys.exit(main())
