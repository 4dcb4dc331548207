"""colossal_llama: continual pre-training and SFT of LLaMA-family models on ColossalAI.

Kept free of heavy imports on purpose: data-preparation worker processes import
submodules of this package and must start in a fraction of a second.
"""

__version__ = "0.1.0"
