"""Import stub for bitsandbytes, for the GPU check machine only (benchmarks/gpu/check.sh puts it on PYTHONPATH).

colossalai 0.5.0 imports `bitsandbytes.optim.optimizer.Optimizer2State` when its optimizer package is
imported (colossalai/nn/optimizer/galore.py, distributed_galore.py; galore_torch/adamw8bit.py too), but
the real package is a 105 MB wheel and the check uses no 8-bit optimizer or quantized layer. This stub
lets those modules import; using anything of bitsandbytes raises.

It has no dist-info, so transformers and accelerate (which ask importlib.metadata) see no bitsandbytes.
peft 0.13 asks only `importlib.util.find_spec`, so it sees one: it then imports its LoRA bnb
dispatchers, which touch `bnb.nn.Linear8bitLt` only for models loaded in 8 bit, and reads
`hasattr(bnb.nn, "Linear4bit")` (False here: no 4-bit layers). Never installed by the project.
"""

__version__ = "0.0.0+stub"
STUB = True

from . import nn, optim  # noqa: E402,F401
