"""Train a LLaMA-family model on prepared buckets with ColossalAI's Booster.

    python train.py --plugin ddp --pretrained model --dataset out/arrow/part-00000 --mixed_precision fp32
    colossalai run --nproc_per_node 8 train.py --config stage1.yaml
    torchrun --nproc_per_node 2 train.py --plugin ddp ...

Every flag: `python train.py --help`; the library: colossal_llama/training/.
"""

import sys

if __name__ == "__main__":
    from colossal_llama.training.cli import main

    sys.exit(main())
