"""Package metadata for colossal_llama.

The pins are the set that resolves cleanly together (`pip check` is clean):
colossalai 0.5.0 pins torch<=2.5.1 and transformers==4.51.3; transformers 4.51
needs huggingface-hub<1.0, and datasets 5.0.1 is the newest release that
accepts that hub.
"""

from setuptools import find_packages, setup

setup(
    name="colossal_llama",
    version="0.1.0",
    description="Continual pre-training and supervised fine-tuning of LLaMA-family models on ColossalAI",
    packages=find_packages(include=["colossal_llama", "colossal_llama.*"]),
    python_requires=">=3.10",
    install_requires=[
        "colossalai==0.5.0",
        "torch==2.5.1",
        "transformers==4.51.3",
        "huggingface-hub>=0.30,<1.0",
        "datasets==5.0.1",
        "tokenizers>=0.21,<0.22",
        "sentencepiece>=0.2",
        "protobuf",
        "numpy",
        "pyarrow>=21",
        "pyyaml",
        "tensorboard",
        "matplotlib>=3.8",
        "tqdm",
        "safetensors",
        "xxhash",  # checkpoint content hashes (files.json)
    ],
    extras_require={"test": ["pytest>=8"]},
    entry_points={
        "console_scripts": [
            "colossal-llama-prepare-pretrain=colossal_llama.data.pretrain:main",
            "colossal-llama-prepare-sft=colossal_llama.data.sft:main",
            "colossal-llama-inspect=colossal_llama.data.inspect_rows:main",
            "colossal-llama-expand-tokenizer=colossal_llama.tokenizer.init_tokenizer:main",
            "colossal-llama-init-model=colossal_llama.model.init_model:main",
            "colossal-llama-train=colossal_llama.training.cli:main",
        ]
    },
)
