"""train(): from a TrainConfig to a trained, exported model; setup() builds the Run that fit() trains.

    export_dir = train(config)     # check_config -> init_distributed -> setup -> loop.fit

Order: check the config against the machine -> process group -> lock
--save_dir for this run (savedir.py) -> setup(): plugin and booster ->
tokenizer -> data (checked against tokenizer and model length) -> model
(freezing, LoRA, NEFTune, gradient checkpointing) -> optimizer and schedule
-> boost -> resume (checked against what the checkpoint was trained on,
identity.py) or load weights -> monitor. Every user error is raised before
the first step, and before anything is written. What differs between plugins
is read from their table (`plugins.spec_of`), never from their names.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from functools import partial
from typing import Callable, ContextManager

import torch
import torch.distributed as dist

from colossal_llama.errors import ConfigError, PluginError
from colossal_llama.model.freeze import freeze_all_but_embeddings, train_only_new_rows
from colossal_llama.model.training_model import (add_neftune, enable_grad_checkpointing, load_causal_lm, lora_config,
                                                 model_signature)
from colossal_llama.outputs import write_json
from colossal_llama.ports import free_port
from colossal_llama.model.attention import COLLATOR_FORM, HF_IMPLEMENTATION, flex_in_one_dtype, run_flex_eagerly
from colossal_llama.training.config import TrainConfig, attention_of, check_machine, loader_workers
from colossal_llama.training.feed import Loading, build_feeds
from colossal_llama.training.identity import run_identity
from colossal_llama.training.loop import Run, StepFn
from colossal_llama.training.metrics import Monitor, device_peak_flops, flops_per_token
from colossal_llama.training.plugins import make_plugin, settings_from, spec_of
from colossal_llama.training.resume import TrainState, load_checkpoint, load_weights, resolve_checkpoint
from colossal_llama.training.savedir import exclusive_save_dir
from colossal_llama.training.schedule import warmup_cosine
from colossal_llama.training.steps import accumulate_step, pipeline_step

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def init_distributed(seed: int) -> None:
    """Join the process group the launcher describes; a plain `python train.py` is a group of one.

    Before colossalai is imported, on CPU: one compile thread. colossalai.booster imports bitsandbytes,
    which calls torch.compile on import, and that warms inductor's pool of compile-worker processes whenever
    triton is installed; nothing is compiled on the CPU. `import torch` has already read the environment, so
    the setting, not TORCHINDUCTOR_COMPILE_THREADS (which a user who sets it keeps).
    """
    if not torch.cuda.is_available() and "TORCHINDUCTOR_COMPILE_THREADS" not in os.environ:
        torch._inductor.config.compile_threads = 1
    import colossalai

    if dist.is_initialized():
        return
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(free_port()))
    colossalai.launch_from_torch(seed=seed, verbose=False)


def build_model(config: TrainConfig, booster, dtype: torch.dtype, attention: str = "sdpa"):
    """The model to boost, loaded in `dtype` with the `attention` path (model/attention.py), and the signature
    of the base model (before LoRA)."""
    if attention == "flex":
        flex_in_one_dtype()
    model = load_causal_lm(config.pretrained, dtype, HF_IMPLEMENTATION[attention], config.trust_remote_code)
    signature = model_signature(model)
    if config.train_new_rows_only:
        vocab = model.get_input_embeddings().weight.shape[0]
        if config.train_new_rows_only >= vocab:
            raise ConfigError(f"--train_new_rows_only {config.train_new_rows_only}: the model has {vocab} rows, "
                              "so no row is new")
        train_only_new_rows(model, config.train_new_rows_only)
    elif config.freeze_non_embeds_params:
        freeze_all_but_embeddings(model)
    if config.use_grad_checkpoint:
        enable_grad_checkpointing(model)
    if config.lora_rank:
        if not booster.plugin.support_lora():
            raise ConfigError(f"--lora_rank does not work with --plugin {config.plugin} (ColossalAI's plugin has "
                              "no LoRA support); use ddp or 3d")
        model = booster.enable_lora(model, lora_config=lora_config(config.lora_rank, config.lora_alpha))
    if config.use_neft:
        add_neftune(model, config.neft_alpha)
    return model, signature


def make_optimizer(config: TrainConfig, model):
    params = [p for p in model.parameters() if p.requires_grad]
    # decoupled weight decay would shrink the frozen old rows, whose gradient is masked to zero
    decay = 0.0 if config.train_new_rows_only else config.weight_decay
    if torch.cuda.is_available():
        from colossalai.nn.optimizer import HybridAdam

        try:
            return HybridAdam(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=decay, adamw_mode=True)
        except Exception as exc:  # noqa: BLE001 - colossalai's kernel loader raises bare Exception/AssertionError
            raise PluginError(
                f"HybridAdam (ColossalAI's Adam on GPU) could not load its kernels, which ColossalAI builds on first "
                f"use: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]}. It needs a CUDA toolkit whose nvcc matches torch's "
                f"CUDA {torch.version.cuda} (CUDA_HOME), g++ and ninja") from exc
    # HybridAdam needs its CPU-Adam kernel, which a CPU-only install lacks
    return torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=decay)


def write_config(config: TrainConfig, is_main: bool) -> None:
    """The resolved config as JSON; replaced whole (a full disk leaves the previous one)."""
    path = config.config_file or os.path.join(config.save_dir, "train_config.json")
    if is_main:
        write_json(path, config.to_dict(), indent=2)


def load_tokenizer_for(config: TrainConfig):
    from colossal_llama.tokenizer.folder import check_fast_slow
    from colossal_llama.tokenizer.loading import load_tokenizer
    from colossal_llama.errors import TokenizerError

    try:
        tokenizer = load_tokenizer(config.pretrained, trust_remote_code=config.trust_remote_code)
        # once per run: checkpoints then save this same tokenizer without loading it back
        check_fast_slow(config.pretrained, what="--pretrained", fast=tokenizer,
                        trust_remote_code=config.trust_remote_code)
        return tokenizer
    except TokenizerError as exc:
        raise ConfigError(str(exc).replace("--tokenizer_dir", "--pretrained")) from exc


def make_monitor(run: Run, model_config) -> Monitor:
    peak = flops = None
    if torch.cuda.is_available():
        peak = device_peak_flops(torch.cuda.get_device_name())
        parameters = run.signature["parameters"]
        flops = lambda length: flops_per_token(parameters, model_config.num_hidden_layers,  # noqa: E731
                                               model_config.hidden_size, length)
    world = dist.get_world_size() if dist.is_initialized() else 1
    return Monitor(run.config, run.is_main, run.total_steps, run.state.step, flops, peak, devices=world)


def train(config: TrainConfig) -> str:
    """Set up and train holding --save_dir for this run alone; returns the exported HF folder.

    Raises:
        ConfigError, DataError, PluginError: user errors, before the first step.
        OutputError: --save_dir (or the export folder) cannot be written: read-only, full.
    """
    from colossal_llama.training.loop import fit

    from colossal_llama.model.hub import resolve_model_dir

    # a hub id becomes its cached folder here, once: everything after (and train_config.json) sees the folder
    config.pretrained = resolve_model_dir(config.pretrained, "--pretrained")
    check_config(config)
    init_distributed(config.seed)
    with exclusive_save_dir(config.save_dir, is_main=dist.get_rank() == 0):
        return fit(setup(config))


def setup(config: TrainConfig) -> Run:
    """Build everything fit() needs, in a process group (train() starts it); raises ConfigError/DataError for
    user errors, before any step."""
    from colossalai.accelerator import get_accelerator
    from colossalai.booster import Booster
    from transformers import AutoConfig

    rank = dist.get_rank()
    device = torch.device(get_accelerator().get_current_device())
    spec = spec_of(config.plugin)
    plugin = make_plugin(config.plugin, settings_from(config))
    booster = Booster(plugin=plugin, mixed_precision=spec.booster_mixed_precision(config.mixed_precision))
    dp_group, dp_size, dp_rank = world_info(plugin)
    tokenizer = load_tokenizer_for(config)
    model_config = AutoConfig.from_pretrained(config.pretrained, trust_remote_code=config.trust_remote_code)
    cuda = device.type == "cuda"
    attention = attention_of(config, cuda)
    if attention == "flex" and not cuda:
        run_flex_eagerly()
    loading = Loading(mask_dtype=DTYPES[config.mixed_precision], form=COLLATOR_FORM[attention],
                      workers=loader_workers(config, cuda), pin_memory=cuda)
    train, evaluation = build_feeds(config, tokenizer, model_config.vocab_size, model_config.max_position_embeddings,
                                    dp_rank, dp_size, loading)
    model, signature = build_model(config, booster, DTYPES[spec.weights_precision(config.mixed_precision)], attention)
    optimizer = make_optimizer(config, model)
    steps = total_steps(config, train.steps_per_epoch)
    warmup = config.warmup_steps if config.warmup_steps is not None else int(0.025 * steps)
    scheduler = warmup_cosine(optimizer, warmup, steps, min_lr=config.lr * config.min_lr_ratio)
    identity = run_identity(config, tokenizer, steps, warmup)
    model, optimizer, _, _, scheduler = booster.boost(model, optimizer, lr_scheduler=scheduler)
    run = Run(config=config, booster=booster, model=model, optimizer=optimizer, scheduler=scheduler,
              tokenizer=tokenizer, train=train, evaluation=evaluation, state=TrainState(), total_steps=steps,
              signature=signature, identity=identity, device=device, rank=rank, dp_group=dp_group, dp_size=dp_size,
              is_main=rank == 0, no_sync=spec.no_sync, clips_in_loop=spec.clips_in_loop,
              autocast=autocast_for(config, device), step_fn=pick_step(config))
    checkpoint = resolve_checkpoint(config.load_checkpoint, config.save_dir)
    if checkpoint and config.weights_only:
        load_weights(run, checkpoint)
    elif checkpoint:
        load_checkpoint(run, checkpoint)
        run.last_saved = run.state.step
    write_config(config, run.is_main)
    run.monitor = make_monitor(run, model_config)
    if run.is_main and train.left_out:
        run.monitor.note(f"note: {train.left_out} of {train.rows} rows do not fill a last global batch of "
                         f"{train.global_batch} and are left out of each epoch")
    return run


def check_config(config: TrainConfig) -> None:
    """Refuse what this machine cannot run and input folders that do not exist, before the process group.

    Raises:
        ConfigError, PluginError: naming the flag.
    """
    check_machine(config, torch.cuda.is_available())
    if config.load_checkpoint and config.load_checkpoint != "latest" and not os.path.isdir(config.load_checkpoint):
        raise ConfigError(f"--load_checkpoint {config.load_checkpoint}: folder does not exist")
    for path in config.dataset + config.eval_dataset:
        if not os.path.isdir(path):
            flag = "--dataset" if path in config.dataset else "--eval_dataset"
            raise ConfigError(f"{flag} {path}: folder does not exist")
    if not os.path.isdir(config.pretrained):
        raise ConfigError(f"--pretrained {config.pretrained}: folder does not exist")


def world_info(plugin) -> tuple[dist.ProcessGroup | None, int, int]:
    """(data-parallel group, its size, this rank's index in it)."""
    group = getattr(plugin, "dp_group", None)
    if not dist.is_initialized():
        return None, 1, 0
    return group, dist.get_world_size(group), dist.get_rank(group)


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run: every epoch, or --max_steps if that is fewer."""
    steps = config.num_epochs * steps_per_epoch
    return min(steps, config.max_steps) if config.max_steps else steps


def autocast_for(config: TrainConfig, device: torch.device) -> Callable[[], ContextManager]:
    """The context the loop's forward runs in: torch.autocast where the plugin leaves precision to the loop
    (plugins.PluginSpec.loop_owns_precision) and trains in bf16, else a no-op."""
    precision = spec_of(config.plugin).autocast_precision(config.mixed_precision)
    if precision is None:
        return nullcontext
    return partial(torch.autocast, device_type=device.type, dtype=DTYPES[precision])


def pick_step(config: TrainConfig) -> StepFn:
    """The step function of the loop: through the pipeline schedule with --pp > 1."""
    return pipeline_step if config.pp > 1 else accumulate_step
