"""`openrecipe import`: configs written to match the shapes in LLaMA-Factory's and axolotl's example folders."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.recipe.schema import load_recipe

# Shaped like LLaMA-Factory examples/train_lora/llama3_lora_sft.yaml.
LLAMAFACTORY_LORA_SFT = """\
### model
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: identity,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4

### output
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null

### eval
val_size: 0.1
per_device_eval_batch_size: 1
eval_strategy: steps
eval_steps: 500
"""

# Shaped like axolotl examples/llama-3/lora-1b.yml, with a chat_template dataset in ShareGPT keys.
AXOLOTL_LORA = """\
base_model: NousResearch/Llama-3.2-1B

load_in_8bit: false
load_in_4bit: false

datasets:
  - path: data/chats.jsonl
    type: chat_template
    field_messages: conversations
    message_property_mappings:
      role: from
      content: value
    roles:
      user: [human]
      assistant: [gpt]
  - path: data/alpaca.json
    type: alpaca
dataset_prepared_path: last_run_prepared
val_set_size: 0.1
output_dir: ./outputs/lora-out

adapter: lora
lora_model_dir:

sequence_len: 2048
sample_packing: true
eval_sample_packing: true

lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
lora_target_linear: true

wandb_project:
wandb_entity:

gradient_accumulation_steps: 2
micro_batch_size: 2
num_epochs: 1
optimizer: adamw_8bit
lr_scheduler: cosine
learning_rate: 0.0002

bf16: auto
tf32: false

gradient_checkpointing: true
resume_from_checkpoint:
logging_steps: 1
flash_attention: true

warmup_steps: 10
evals_per_epoch: 4
saves_per_epoch: 1
weight_decay: 0.0
special_tokens:
  pad_token: "<|end_of_text|>"
"""


def _llamafactory_data(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "identity.json").write_text(
        json.dumps([{"instruction": "hi", "input": "", "output": "Hello! I am {{name}}, made by {{author}}."}])
    )
    (folder / "alpaca_en_demo.json").write_text(
        json.dumps([{"instruction": "Name a colour.", "input": "", "output": "Blue."}])
    )
    info = {
        "identity": {"file_name": "identity.json"},
        "alpaca_en_demo": {"file_name": "alpaca_en_demo.json"},
        "glaive_toolcall_en_demo": {
            "file_name": "glaive_toolcall_en_demo.json",
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "tools": "tools"},
        },
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))


def test_llamafactory_lora_sft(tmp_path):
    _llamafactory_data(tmp_path / "data")
    config = tmp_path / "llama3_lora_sft.yaml"
    config.write_text(LLAMAFACTORY_LORA_SFT)
    out = tmp_path / "recipes" / "imported.yaml"
    result = CliRunner().invoke(app, ["import", "llamafactory", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    recipe = yaml.safe_load(out.read_text())
    assert recipe["base_model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    clean, sft = recipe["stages"]
    assert clean["sources"] == [
        {"path": "../data/dataset_info.json", "dataset": "identity", "name": "identity"},
        {"path": "../data/dataset_info.json", "dataset": "alpaca_en_demo", "name": "alpaca_en_demo"},
    ]
    assert sft["tokenize"] == {"max_length": 2048}
    train = sft["train"]
    assert train["method"] == "lora" and train["lora"] == {"rank": 8, "alpha": 16, "target_modules": "all-linear"}
    assert (train["batch_size"], train["micro_batch_size"], train["learning_rate"], train["epochs"]) == (
        8,
        1,
        1e-4,
        3.0,
    )
    assert train["schedule"] == {"kind": "cosine", "warmup_ratio": 0.1}
    assert (train["eval_fraction"], train["eval_every_steps"], train["precision"]) == (0.1, 500, "bf16")
    text = out.read_text()
    for key in ("max_samples", "output_dir", "preprocessing_num_workers", "ddp_timeout"):
        assert f"#   {key}:" in text and key in result.output
    assert recipe["chat_template"] == "llama3" and "#   template" not in text
    assert "#   lora_rank" not in text and "#   learning_rate" not in text
    load_recipe(out)  # valid as written


def test_llamafactory_pt_with_explicit_dataset_info(tmp_path):
    data = tmp_path / "elsewhere"
    data.mkdir()
    (data / "c4_demo.jsonl").write_text(json.dumps({"text": "Some web text."}) + "\n")
    (data / "dataset_info.json").write_text(
        json.dumps({"c4_demo": {"file_name": "c4_demo.jsonl", "columns": {"prompt": "text"}}})
    )
    config = tmp_path / "llama3_full_pt.yaml"
    config.write_text(
        "model_name_or_path: Qwen/Qwen2.5-0.5B\nstage: pt\nfinetuning_type: full\ndataset: c4_demo\n"
        "cutoff_len: 1024\nlearning_rate: 1.0e-5\nnum_train_epochs: 1\nquantization_bit: 8\n"
    )
    result = CliRunner().invoke(
        app, ["import", "llamafactory", str(config), "--dataset-info", str(data / "dataset_info.json")]
    )
    assert result.exit_code == 0, result.output
    recipe = yaml.safe_load((tmp_path / "llama3_full_pt.openrecipe.yaml").read_text())
    cpt = recipe["stages"][1]
    assert cpt["kind"] == "cpt" and cpt["block_size"] == 1024 and cpt["train"]["method"] == "full"
    assert "quantization_bit" in result.output


def test_llamafactory_unknown_dataset_and_stage_are_user_errors(tmp_path):
    _llamafactory_data(tmp_path / "data")
    config = tmp_path / "c.yaml"
    config.write_text("model_name_or_path: m\nstage: sft\ndataset: identiy\n")
    result = CliRunner().invoke(app, ["import", "llamafactory", str(config)])
    assert result.exit_code == 2 and "did you mean 'identity'" in result.output
    config.write_text("model_name_or_path: m\nstage: dpo\ndataset: identity\n")
    result = CliRunner().invoke(app, ["import", "llamafactory", str(config)])
    assert result.exit_code == 2 and "stage 'dpo' has no equivalent" in result.output


def test_axolotl_lora(tmp_path):
    (tmp_path / "data").mkdir()
    chat = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
    (tmp_path / "data" / "chats.jsonl").write_text(json.dumps(chat) + "\n")
    (tmp_path / "data" / "alpaca.json").write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}]))
    config = tmp_path / "lora-1b.yml"
    config.write_text(AXOLOTL_LORA)
    result = CliRunner().invoke(app, ["import", "axolotl", str(config)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "lora-1b.openrecipe.yaml"
    recipe = yaml.safe_load(out.read_text())
    clean, sft = recipe["stages"]
    assert clean["sources"][0] == {
        "path": "data/chats.jsonl",
        "name": "chats",
        "format": "sharegpt",
        "columns": {"messages": "conversations"},
        "tags": {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
            "system_tag": "system",
        },
    }
    assert clean["sources"][1]["format"] == "alpaca"
    assert sft["tokenize"] == {"max_length": 2048, "pack": True}
    train = sft["train"]
    assert train["lora"] == {"rank": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    assert (train["batch_size"], train["micro_batch_size"], train["eval_fraction"]) == (4, 2, 0.1)
    assert train["gradient_checkpointing"] is True and train["schedule"] == {"kind": "cosine", "warmup_steps": 10}
    for key in ("optimizer", "flash_attention", "evals_per_epoch", "special_tokens", "dataset_prepared_path"):
        assert key in result.output
    # The imported clean stage reads the files through the mapping.
    from openrecipe.data.config import DataSource
    from openrecipe.data.load import load_source

    recipe_source = DataSource(**clean["sources"][0])
    loaded = load_source(recipe_source, base_dir=tmp_path)
    assert loaded.records[0].messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    load_recipe(out)


def test_axolotl_qlora_completion_becomes_cpt(tmp_path):
    config = tmp_path / "pretrain.yml"
    config.write_text(
        "base_model: HuggingFaceTB/SmolLM2-135M\nadapter: qlora\nload_in_4bit: true\n"
        "pretraining_dataset:\n  - path: allenai/c4\n    type: completion\n    field: text\n"
        "sequence_len: 512\nmicro_batch_size: 4\nnum_epochs: 1\nlearning_rate: 1e-4\nlr_scheduler: cosine_with_min_lr\n"
    )
    result = CliRunner().invoke(app, ["import", "axolotl", str(config)])
    assert result.exit_code == 0, result.output
    recipe = yaml.safe_load((tmp_path / "pretrain.openrecipe.yaml").read_text())
    clean, cpt = recipe["stages"]
    assert clean["sources"] == [{"path": "allenai/c4", "name": "c4", "format": "text", "columns": {"text": "text"}}]
    assert cpt["kind"] == "cpt" and cpt["train"]["method"] == "qlora" and cpt["block_size"] == 512
    assert "cosine_with_min_lr is imported as cosine" in result.output


@pytest.mark.parametrize(
    ("name", "imported_as", "reported"),
    [("qwen", "qwen", False), ("qwen2", "qwen", False), ("vicuna", None, True), ("default", None, False)],
)
def test_llamafactory_template_names_map_to_built_in_templates_or_are_reported(tmp_path, name, imported_as, reported):
    _llamafactory_data(tmp_path / "data")
    config = tmp_path / "lora_sft.yaml"
    config.write_text(LLAMAFACTORY_LORA_SFT.replace("template: llama3", f"template: {name}"))
    out = tmp_path / "imported.yaml"
    result = CliRunner().invoke(app, ["import", "llamafactory", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text()).get("chat_template") == imported_as
    assert ("#   template:" in out.read_text()) is reported


# Shaped like LLaMA-Factory examples/deepspeed/ds_z3_offload_config.json and axolotl deepspeed_configs/zero2.json.
DS_Z3_OFFLOAD = {
    "train_batch_size": "auto",
    "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu"}},
}


def _imported_distributed(tmp_path, kind: str, config_text: str) -> tuple[dict, str]:
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    result = CliRunner().invoke(app, ["import", kind, str(config)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "config.openrecipe.yaml"
    load_recipe(out)
    return yaml.safe_load(out.read_text())["stages"][1]["train"].get("distributed"), " ".join(result.output.split())


def test_a_deepspeed_json_becomes_the_strategy_and_its_zero_stage(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "ds_z3_offload_config.json").write_text(json.dumps(DS_Z3_OFFLOAD))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c4_demo.jsonl").write_text(json.dumps({"text": "Some web text."}) + "\n")
    info = {"c4_demo": {"file_name": "c4_demo.jsonl", "columns": {"prompt": "text"}}}
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps(info))
    base = "model_name_or_path: m\nstage: pt\ndataset: c4_demo\n"
    distributed, output = _imported_distributed(
        tmp_path, "llamafactory", base + "deepspeed: ds/ds_z3_offload_config.json\n"
    )
    assert distributed == {"strategy": "deepspeed", "zero_stage": 3}
    assert "offload_optimizer, offload_param" in output and "ZeRO offload has no equivalent" in output
    # Not beside the config (axolotl names its own bundled files): the stage is read from the name.
    axolotl = "base_model: m\ndatasets:\n  - path: tatsu-lab/alpaca\n    type: alpaca\n"
    bundled = axolotl + "deepspeed: deepspeed_configs/zero2.json\n"
    distributed, output = _imported_distributed(tmp_path, "axolotl", bundled)
    assert distributed == {"strategy": "deepspeed", "zero_stage": 2}
    assert "the ZeRO stage was read from its name" in output
    distributed, _ = _imported_distributed(tmp_path, "axolotl", axolotl + "fsdp:\n  - full_shard\n")
    assert distributed == {"strategy": "fsdp"}


def test_a_deepspeed_json_that_is_not_json_names_the_file(tmp_path):
    (tmp_path / "broken.json").write_text("{stage: 3")
    config = tmp_path / "config.yaml"
    config.write_text(
        "base_model: m\ndatasets:\n  - path: tatsu-lab/alpaca\n    type: alpaca\ndeepspeed: broken.json\n"
    )
    result = CliRunner().invoke(app, ["import", "axolotl", str(config)])
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "broken.json" in output and "not valid JSON" in output
