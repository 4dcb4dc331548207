"""train.py's command line: the old flags, --config files, and refusing flags that would do nothing."""

import dataclasses
import json
import os
import re
import shlex

import pytest

from helpers import REPO

from colossal_llama.errors import ConfigError, PluginError
from colossal_llama.training.cli import parse_train_args, train_parser
from colossal_llama.training.config import TrainConfig, check_machine
from colossal_llama.training.plugins import HYBRID_ONLY

BASE = ["--pretrained", "m", "--dataset", "d/arrow/part-00000"]

# the old Colossal-LLaMA train.py flags, each with a non-default value, for --plugin 3d (which reads them all)
OLD_FLAGS = [
    "--pretrained", "m", "--dataset", "a", "b", "--plugin", "3d", "--load_checkpoint", "ck",
    "--save_interval", "50", "--save_dir", "s", "--tensorboard_dir", "t", "--config_file", "c.json",
    "--num_epochs", "3", "--accumulation_steps", "1", "--batch_size", "8", "--lr", "1e-4", "--max_length", "2048",
    "--mixed_precision", "fp16", "--grad_clip", "0.5", "--weight_decay", "0.01", "--warmup_steps", "10",
    "--use_grad_checkpoint", "--use_flash_attn", "--use_neft", "--freeze_non_embeds_params", "--pad_token", "unk",
    "--padding_mode", "max_length", "--skip_save_each_epoch", "--tp", "2", "--pp", "2", "--sp", "2",
    "--zero_stage", "1", "--sp_mode", "all_to_all", "--enable_sequence_parallelism", "--zero_cpu_offload",
    "--microbatch_size", "2",
]


def test_old_flags_are_accepted():
    config = parse_train_args(OLD_FLAGS)
    assert config.dataset == ["a", "b"] and config.plugin == "3d" and config.lr == 1e-4
    assert (config.tp, config.pp, config.sp, config.zero_stage, config.microbatch_size) == (2, 2, 2, 1, 2)
    assert config.use_flash_attn and config.use_neft and config.zero_cpu_offload and config.skip_save_each_epoch
    assert config.padding_mode == "max_length" and config.pad_token == "unk" and config.config_file == "c.json"
    assert parse_train_args(BASE + ["--plugin", "ddp", "--lora_rank", "8"]).lora_rank == 8


def test_benchmark_flags():
    config = parse_train_args(["--pretrained", "m", "--benchmark", "--num_samples", "10", "--max_length", "64"])
    assert config.benchmark and config.num_samples == 10
    with pytest.raises(ConfigError, match="--num_samples needs --benchmark"):
        parse_train_args(BASE + ["--num_samples", "10"])


def test_every_field_is_a_flag_with_help():
    actions = {a.dest: a for a in train_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in actions and actions[f.name].help, f.name


def test_config_file_and_flag_precedence(tmp_path):
    path = tmp_path / "stage.yaml"
    path.write_text("pretrained: m\ndataset: [x, y]\nplugin: ddp\nlr: 3e-5\nbatch_size: 4\nuse_neft: true\n")
    config = parse_train_args(["--config", str(path), "--batch_size", "16"])
    assert config.lr == 3e-5 and isinstance(config.lr, float)  # YAML 1.1 reads 3e-5 as a string
    assert config.dataset == ["x", "y"] and config.batch_size == 16 and config.use_neft
    json_path = tmp_path / "stage.json"
    json_path.write_text(json.dumps({"pretrained": "m", "dataset": "x", "plugin": "ddp"}))
    assert parse_train_args(["--config", str(json_path)]).dataset == ["x"]
    path.write_text("pretrained: m\ndataset: [x]\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match=f"--config {path}: unknown key 'learning_rate'"):
        parse_train_args(["--config", str(path)])
    path.write_text("pretrained: m\ndataset: [x]\nbatch_size: many\n")
    with pytest.raises(ConfigError, match="batch_size: expected int, got 'many'"):
        parse_train_args(["--config", str(path)])
    with pytest.raises(ConfigError, match="does not exist"):
        parse_train_args(["--config", str(tmp_path / "none.yaml")])


@pytest.mark.parametrize("flag", sorted(HYBRID_ONLY))
def test_hybrid_flags_rejected_for_other_plugins(flag):
    value = {"sp_mode": "ring"}.get(flag, "2")
    field = {f.name: f for f in dataclasses.fields(TrainConfig)}[flag]
    argv = BASE + ["--plugin", "ddp", f"--{flag}"] + ([] if field.type == "bool" else [value])
    with pytest.raises(ConfigError, match=f"--{flag} does not apply to --plugin ddp"):
        parse_train_args(argv)


NON_3D = ("ddp", "gemini", "gemini_auto", "zero2", "zero2_cpu")
# what old Colossal-LLaMA launch scripts pass whatever the plugin: the 3d flags at the old train.py's defaults
OLD_3D_DEFAULTS = ["--tp", "1", "--pp", "1", "--sp", "1", "--zero_stage", "1", "--sp_mode", "split_gather",
                   "--microbatch_size", "1"]


@pytest.mark.parametrize("plugin", NON_3D)
def test_3d_flags_at_their_defaults_are_accepted_with_every_plugin(plugin):
    config = parse_train_args(BASE + ["--plugin", plugin] + OLD_3D_DEFAULTS)
    assert (config.plugin, config.tp, config.pp, config.sp, config.zero_stage) == (plugin, 1, 1, 1, 1)
    defaults = ["--zero_stage", "0", "--no-zero_cpu_offload", "--no-enable_sequence_parallelism"]
    assert parse_train_args(BASE + ["--plugin", plugin] + defaults).zero_stage == 0


@pytest.mark.parametrize("plugin, argv, accepted", [
    ("zero2", ["--zero_stage", "2"], True),  # zero2 is ZeRO stage 2
    ("zero2_cpu", ["--zero_stage", "2", "--zero_cpu_offload"], True),  # ... offloading optimizer states to CPU
    ("zero2", ["--zero_cpu_offload"], False),
    ("ddp", ["--zero_stage", "2"], False),
    ("gemini", ["--zero_stage", "2"], False),
    ("gemini_auto", ["--pp", "2"], False),
    ("zero2_cpu", ["--microbatch_size", "2"], False),
])
def test_3d_flags_refused_only_where_the_plugin_cannot_honour_them(plugin, argv, accepted):
    if accepted:
        parse_train_args(BASE + ["--plugin", plugin] + argv)
    else:
        with pytest.raises(ConfigError, match=f"does not apply to --plugin {plugin}"):
            parse_train_args(BASE + ["--plugin", plugin] + argv)


@pytest.mark.parametrize("argv, message", [
    (["--plugin", "ddp", "--weights_only"], "--weights_only needs --load_checkpoint"),
    (["--plugin", "ddp", "--eval_interval", "5"], "--eval_interval needs --eval_dataset"),
    (["--plugin", "ddp", "--neft_alpha", "1"], "--neft_alpha needs --use_neft"),
    (["--plugin", "ddp", "--lora_alpha", "16"], "--lora_alpha needs --lora_rank"),
    (["--plugin", "ddp", "--lora_rank", "8", "--freeze_non_embeds_params"], "cannot be combined"),
    (["--plugin", "gemini", "--mixed_precision", "fp32"], "not available with --plugin gemini"),
    (["--plugin", "3d", "--zero_cpu_offload"], "needs --zero_stage 1 or 2"),
    (["--plugin", "3d", "--zero_stage", "1", "--mixed_precision", "fp32"], "ZeRO optimizer trains in fp16/bf16"),
    (["--plugin", "3d", "--pp", "2", "--accumulation_steps", "2"], "the pipeline already accumulates"),
    (["--plugin", "3d", "--pp", "2", "--batch_size", "3", "--microbatch_size", "2"], "not a multiple"),
    (["--plugin", "3d", "--microbatch_size", "2"], "applies with --pp > 1 only"),
    (["--plugin", "3d", "--sp", "2"], "needs --enable_sequence_parallelism"),
    (["--plugin", "ddp", "--use_flash_attn", "--mixed_precision", "fp32"], "fp16/bf16 only"),
    (["--plugin", "ddp", "--batch_size", "0"], "--batch_size must be at least 1"),
])
def test_flags_that_cannot_work(argv, message):
    with pytest.raises(ConfigError) as caught:
        parse_train_args(BASE + argv)
    assert message in str(caught.value)


def test_choices(capsys):
    with pytest.raises(SystemExit):
        parse_train_args(BASE + ["--packed_attention", "none"])
    assert "invalid choice: 'none'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--packed_attention must be one of"):  # a config built in code
        TrainConfig(pretrained="m", dataset=["d"], plugin="ddp", packed_attention="none")


def test_machine_checks():
    with pytest.raises(PluginError, match="--plugin gemini needs CUDA"):
        check_machine(parse_train_args(BASE), cuda_available=False)
    check_machine(parse_train_args(BASE), cuda_available=True)
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        check_machine(parse_train_args(BASE + ["--plugin", "ddp", "--mixed_precision", "fp16"]), False)


README = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()


def readme_train_commands() -> list[list[str]]:
    """The train.py arguments of every README command that runs train.py (directly or through a launcher)."""
    lines = re.findall(r"^ +((?:python|torchrun|colossalai run)\b.*\btrain\.py\b.*)$", README, re.M)
    return [shlex.split(line.split("train.py", 1)[1]) for line in lines]


def test_readme_train_commands_parse(monkeypatch):
    commands = readme_train_commands()
    assert len(commands) >= 7
    monkeypatch.chdir(REPO)  # the YAML's paths and the README's are relative to the repository
    for argv in commands:
        config = parse_train_args(argv)
        assert config.pretrained and config.dataset


def test_readme_documents_every_train_flag():
    for action in train_parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help" and not flag.startswith("--no-"):
                assert f"`{flag}" in README, f"{flag} is not documented in the README"
    assert "`--no-` form" in README
