"""Package metadata for colossal_llama: its dependencies and one console script per command.

    pip install .            # or: pip wheel --no-deps . && pip install colossal_llama-*.whl
    pip install -e '.[test]' # what `make install` does

The pins are the set that resolves cleanly together (`pip check` is clean):
colossalai 0.5.0 pins torch<=2.5.1, transformers==4.51.3 and peft<=0.13.2;
transformers 4.51 needs huggingface-hub<1.0, and datasets 5.0.1 is the newest
release that accepts that hub. Every package the code imports is listed, even
where a dependency brings it today (peft comes with colossalai, jinja2 with
nothing that requires it: transformers imports it for chat templates only).

Every command is a console script `colossal-llama-<verb>`; an installed
package needs no checkout (the stage runner launches `python -m
colossal_llama.training`, not the repository's train.py).
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
        "huggingface-hub>=0.30,<1.0",  # also read directly: model ids resolve through its cache
        "datasets==5.0.1",
        "tokenizers>=0.21,<0.22",
        "sentencepiece>=0.2",
        "protobuf",
        "numpy",
        "pyarrow>=21",
        "pyyaml",
        "pydantic>=2,<3",
        "tensorboard",
        "matplotlib>=3.8",
        "tqdm",
        "safetensors>=0.4.3",
        "xxhash",  # checkpoint content hashes (files.json)
        "peft>=0.7.1,<=0.13.2",  # LoRA; the range colossalai 0.5.0 accepts
        "jinja2>=3.1",  # chat templates (apply_chat_template renders them with it)
    ],
    extras_require={
        # the wheel test builds the package without build isolation (no download): setuptools and its
        # bdist_wheel must be importable; wheel < 0.46 still holds bdist_wheel for setuptools < 70.1
        # (and the suite runs the benchmarks on the bundled data: psutil)
        "test": ["pytest>=8", "setuptools>=61", "wheel>=0.42,<0.46", "psutil>=5.9"],
        "bench": ["psutil>=5.9"],  # benchmarks/: peak memory of the runs
    },
    # a literal list: tests/test_help.py reads it from this file without running it
    entry_points={
        "console_scripts": [
            "colossal-llama-prepare-pretrain=colossal_llama.data.pretrain:main",
            "colossal-llama-prepare-sft=colossal_llama.data.sft:main",
            "colossal-llama-inspect=colossal_llama.data.inspect_rows:main",
            "colossal-llama-init-tokenizer=colossal_llama.tokenizer.init_tokenizer:main",
            # its earlier name, kept for the scripts that call it
            "colossal-llama-expand-tokenizer=colossal_llama.tokenizer.init_tokenizer:main",
            "colossal-llama-init-model=colossal_llama.model.init_model:main",
            "colossal-llama-train=colossal_llama.training.cli:main",
            "colossal-llama-run-recipe=colossal_llama.stages.__main__:main",
            "colossal-llama-report=colossal_llama.stages.report:main",
            "colossal-llama-generate=colossal_llama.inference.generate:main",
            "colossal-llama-chat=colossal_llama.inference.chat:main",
            "colossal-llama-evaluate=colossal_llama.evaluate.__main__:main",
        ]
    },
)
