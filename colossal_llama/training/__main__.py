"""`python -m colossal_llama.training`: train.py's command line, from the installed package.

    python -m colossal_llama.training --config stage1.yaml --lr 1e-4
    torchrun --nproc_per_node 2 -m colossal_llama.training --plugin ddp --pretrained model --dataset out/arrow/part-*
    colossalai run --nproc_per_node 8 -m colossal_llama.training --config stage1.yaml

The stage runner launches training this way: an installed package (a wheel,
`pip install .`) has no train.py at the repository root. Same flags as
train.py and `colossal-llama-train`; `--help` lists them.
"""

import sys

if __name__ == "__main__":
    from colossal_llama.training.cli import main

    sys.exit(main())
