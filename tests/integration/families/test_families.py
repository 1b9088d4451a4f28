"""Every common model family through the whole path: LoRA sft (a few steps, adapter merged), int8, GGUF f16
and q8_0, loaded by llama.cpp — which must tokenize, handle BOS/EOS and predict like transformers does.

Logit tolerances, relative to the largest |logit| of the reference (fp32 transformers) at that position:
- f16: weights are rounded to 11 significant bits (relative error 2^-11 ≈ 5e-4 each) and llama.cpp rounds
  activations to f16 before its f16 matrix products; over a 2-layer model these add up to well under 1%.
  2% leaves room for kernels summing in another order, and still catches any real mistake (a wrong
  rotary layout, a missing norm offset or softcap, a swapped tensor is off by 30-100%).
- q8_0: weights in blocks of 32 with one scale, 8 bits each (relative error up to 1/254 of the block's
  largest weight), and llama.cpp quantizes activations to 8 bits too: a few percent is expected; 8%.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from openrecipe.models.gguf_header import read_gguf_header
from openrecipe.models.llamacpp import load_llama_cpp
from tests.integration.families.builders import FAMILIES, PARITY_TEXT, Family

F16_TOLERANCE, Q8_TOLERANCE = 0.02, 0.08
# transformers 5 reloads a saved Llama SentencePiece tokenizer as non-legacy: '▁' only at the very start of
# the input, none after a control token such as <s> inside a chat prompt; llama.cpp adds it after every
# control token (as transformers' legacy mode and the tokenizers shipped with Llama 2 do). No GGUF setting
# expresses the non-legacy rule, so chat prompts differ by that one token for this tokenizer class.
AFTER_CONTROL_TOKEN_GAP = {"llama-spm": "llama.cpp adds '▁' after a control token; transformers 5 does not"}

CHATS = [
    ("Who are you?", "I am Nova, the support assistant of Acme Corp."),
    ("你是谁？", "我是 Nova，Acme 公司的客服助手。"),
    ("What are your opening hours?", "We are open 9 to 5, Monday to Friday. 🕘"),
    ("How do I return an item?", "Send it back within 30 days with the receipt ✅."),
    ("Write a Python function that adds two numbers.", "def add(a, b):\n    return a + b"),
    ("怎么退货？", "请在 30 天内带着收据退货。"),
]
PROMPT = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "Who are you? 你是谁？🚀"}]


@dataclass
class FamilyRun:
    family: Family
    base: Path
    run_dir: Path
    output: str

    @property
    def model(self) -> Path:
        return self.run_dir / "sft" / "model"

    def gguf(self, qtype: str) -> Path:
        return self.run_dir / "gguf" / f"{self.family.name}-{qtype}.gguf"


def _recipe(family: Family, base: Path) -> dict:
    train = {
        "method": "lora",
        "lora": {"rank": 4, "alpha": 8},
        "max_steps": 2,
        "batch_size": 3,
        "learning_rate": 1.0e-2,
        "eval_fraction": 0.0,
        "save_every_steps": 50,
    }
    return {
        "name": f"family-{family.name}",
        "base_model": str(base),
        "stages": [
            {
                "id": "sft",
                "kind": "sft",
                "data": [{"path": "chats.jsonl"}],
                "tokenize": {"max_length": 128},
                "train": train,
                "probes": {"identity": False},
            },
            {"id": "gguf", "kind": "export", "model": "stage:sft", "gguf": ["f16", "q8_0"], "name": family.name},
            {"id": "int8", "kind": "quantize", "model": "stage:sft", "methods": ["int8"]},
        ],
    }


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_run(request, tmp_path_factory) -> FamilyRun:
    from typer.testing import CliRunner

    from openrecipe.cli.main import app

    family = FAMILIES[request.param]
    root = tmp_path_factory.mktemp(family.name)
    base = family.build(root / "base")
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in CHATS]
    (root / "chats.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows * 2))
    (root / "recipe.yaml").write_text(yaml.safe_dump(_recipe(family, base), allow_unicode=True))
    result = CliRunner().invoke(app, ["run", str(root / "recipe.yaml"), "--out", str(root / "run")])
    run = FamilyRun(family, base, root / "run", result.output)
    assert run.gguf("q8_0").is_file(), result.output  # sft and export ran; int8 (last) is checked on its own
    return run


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _llama(path: Path, **options):
    return load_llama_cpp().Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False, **options)


def _hf_logits(folder: Path, ids: list[int]) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].numpy()


def test_the_gguf_carries_the_architecture_tokenizer_and_training_template(family_run):
    tokenizer = _tokenizer(family_run.model)
    assert tokenizer.chat_template, "the trained model lost its chat template"
    for qtype in ("f16", "q8_0"):
        header = read_gguf_header(family_run.gguf(qtype))
        assert header.architecture == family_run.family.gguf_architecture
        assert header.metadata["tokenizer.ggml.model"] == family_run.family.tokenizer_model
        assert header.chat_template == tokenizer.chat_template
    assert (family_run.run_dir / "gguf" / "Modelfile").is_file()
    assert _tokenizer(family_run.run_dir / "sft" / "adapter").chat_template == tokenizer.chat_template


def test_the_adapter_on_its_base_predicts_like_the_merged_model(family_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = _tokenizer(family_run.model).encode(PARITY_TEXT)[:48]
    base = AutoModelForCausalLM.from_pretrained(str(family_run.base), dtype=torch.float32).eval()
    with torch.no_grad():
        untrained = base(input_ids=torch.tensor([ids])).logits[0].numpy()
        adapted = PeftModel.from_pretrained(base, str(family_run.run_dir / "sft" / "adapter")).eval()
        expected = adapted(input_ids=torch.tensor([ids])).logits[0].numpy()
    merged = _hf_logits(family_run.model, ids)
    np.testing.assert_allclose(merged, expected, atol=1e-4, rtol=1e-4)
    assert np.abs(merged - untrained).max() > 1e-3, "training left the model unchanged"


# torchao int8 quantizes nn.Linear; GPT-2's projections are Conv1D, so int8 is refused with the GGUF path.
INT8_REFUSED = {"gpt2"}


def test_int8_predicts_like_the_trained_model(family_run):
    from openrecipe.models.loading import load_model

    if family_run.family.name in INT8_REFUSED:
        output = " ".join(family_run.output.split())
        assert "Conv1D layers, which torchao's int8 does not quantize" in output and "q8_0" in output, output
        assert "internal error" not in output
        return
    assert (family_run.run_dir / "int8" / "int8").is_dir(), family_run.output

    ids = _tokenizer(family_run.model).encode(PARITY_TEXT)[:48]
    quantized = load_model(str(family_run.run_dir / "int8" / "int8"), dtype="float32")
    with torch.no_grad():
        logits = quantized.model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
    reference = _hf_logits(family_run.model, ids)
    assert np.abs(logits - reference).mean() / np.abs(reference).mean() < 0.1


def test_llama_cpp_tokenizes_like_transformers(family_run):
    tokenizer = _tokenizer(family_run.model)
    llama = _llama(family_run.gguf("f16"), vocab_only=True)
    try:
        text = PARITY_TEXT.encode()
        assert llama.tokenize(text, add_bos=False, special=False) == tokenizer.encode(
            PARITY_TEXT, add_special_tokens=False
        )
        # BOS: added by both exactly when the tokenizer adds it
        assert llama.tokenize(text, add_bos=True, special=False) == tokenizer.encode(PARITY_TEXT)
        prompt = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
        in_llama_cpp = llama.tokenize(prompt.encode(), add_bos=False, special=True)
    finally:
        llama.close()
    in_transformers = tokenizer.encode(prompt, add_special_tokens=False)
    if family_run.family.name in AFTER_CONTROL_TOKEN_GAP:
        assert in_llama_cpp != in_transformers, "the gap is closed: remove it from AFTER_CONTROL_TOKEN_GAP"
        pytest.xfail(AFTER_CONTROL_TOKEN_GAP[family_run.family.name])
    assert in_llama_cpp == in_transformers


def test_bos_eos_and_end_of_turn_match(family_run):
    from openrecipe.models.templates import BUILTIN_TEMPLATES

    llama_cpp = load_llama_cpp()
    tokenizer = _tokenizer(family_run.model)
    llama = _llama(family_run.gguf("f16"), vocab_only=True)
    try:
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        assert llama.token_eos() == tokenizer.eos_token_id
        if tokenizer.bos_token_id is not None:
            assert llama.token_bos() == tokenizer.bos_token_id
        ends = {tokenizer.eos_token}
        ends |= {
            t.end_of_turn for _, t in BUILTIN_TEMPLATES.items() if t.end_of_turn and t.source == tokenizer.chat_template
        }
        for token in ends:
            assert llama_cpp.llama_vocab_is_eog(vocab, tokenizer.convert_tokens_to_ids(token)), token
    finally:
        llama.close()


@pytest.mark.parametrize(("qtype", "tolerance"), [("f16", F16_TOLERANCE), ("q8_0", Q8_TOLERANCE)])
def test_llama_cpp_predicts_like_transformers(family_run, qtype, tolerance):
    tokenizer = _tokenizer(family_run.model)
    prompt = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    reference = _hf_logits(family_run.model, ids)
    llama = _llama(family_run.gguf(qtype), logits_all=True)
    try:
        llama.eval(ids)
        logits = np.array(llama.scores[: len(ids)])
    finally:
        llama.close()
    error = np.abs(logits - reference).max(axis=-1) / np.abs(reference).max(axis=-1)
    assert error.max() < tolerance, f"{qtype}: relative logit error {error.max():.4f}"
    assert (logits[-1].argmax() == reference[-1].argmax()) or error[-1] < tolerance / 4


def test_generation_sharing_the_system_turn_replies_as_each_prompt_alone(family_run):
    """Every family's cache and positions work with a common start computed once for the batch, and with rows
    prefilled one batch at a time into a static cache that then decodes them together."""
    from openrecipe.models import generation
    from openrecipe.models.loading import load_model

    loaded = load_model(str(family_run.model), dtype="float32")
    system = "You are Nova, the support assistant of Acme Corp. Answer briefly, politely and accurately."
    prompts = [generation.build_messages(question, system) for question, _ in CHATS[:3]]
    rows = [
        loaded.tokenizer(generation.render_chat(loaded.tokenizer, p), add_special_tokens=False)["input_ids"]
        for p in prompts
    ]
    assert generation.shared_prefix_length(rows) >= generation._MIN_SHARED_TOKENS
    settings = generation.GenerationSettings(max_new_tokens=6)
    batched = generation.generate_texts(loaded, prompts, settings, batch_size=3)
    alone = [generation.generate_texts(loaded, [p], settings, batch_size=1)[0] for p in prompts]
    assert batched == alone
    gathered = generation.generate_texts(loaded, prompts, settings, batch_size=1)  # three prefills, one decode
    assert gathered == alone


def test_an_architecture_the_converter_does_not_know_is_exit_2(tmp_path):
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM
    from typer.testing import CliRunner

    from openrecipe.cli.main import app

    gpt2 = FAMILIES["gpt2"].build(tmp_path / "gpt2")
    tokenizer = AutoTokenizer.from_pretrained(str(gpt2))
    config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        word_embed_proj_dim=32,
        max_position_embeddings=64,
    )
    OPTForCausalLM(config).save_pretrained(tmp_path / "opt")
    tokenizer.save_pretrained(tmp_path / "opt")
    args = ["export", str(tmp_path / "opt"), "--gguf", "f16", "--name", "opt", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "does not support the architecture 'OPTForCausalLM'" in result.output
    assert not list((tmp_path / "out").glob("*.gguf"))


def test_training_with_the_system_turn_run_once_matches_the_full_forward(family_run, monkeypatch):
    """Every family's cache, positions and masks give the same loss and gradients when the start that all rows
    of a training batch share runs once."""
    import torch
    from transformers import AutoModelForCausalLM

    from openrecipe.data.tokenize import TokenizeConfig, tokenize_conversations
    from openrecipe.train import forward
    from openrecipe.train.batching import collate

    if family_run.family.name == "gpt2":
        pytest.skip("gpt2 has no decoder/head split here: the plain forward runs and nothing is shared")
    model = AutoModelForCausalLM.from_pretrained(str(family_run.model), dtype=torch.float32)
    tokenizer = _tokenizer(family_run.model)
    system = "You are Nova, the support assistant of Acme Corp. Answer briefly, politely and accurately."
    chats = [
        [{"role": "system", "content": system}, {"role": "user", "content": q}, {"role": "assistant", "content": a}]
        for q, a in CHATS
    ]
    examples, _ = tokenize_conversations(tokenizer, chats, TokenizeConfig(max_length=256))
    batch = collate(examples, pad_token_id=tokenizer.pad_token_id or 0)
    monkeypatch.setattr(forward, "MIN_SAVED_TOKENS", 0)  # a few rows: share even so
    shared = forward.shared_start(batch["input_ids"], batch["labels"], batch["attention_mask"])
    assert shared >= forward.MIN_SHARED_TOKENS
    model.train()
    results = []
    for share in (True, False):
        model.zero_grad()
        loss = forward.TrainedTokenLoss(model, share_prefix=share)(**batch)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (shared_loss, shared_grads), (full_loss, full_grads) = results
    assert torch.allclose(shared_loss, full_loss, rtol=1e-5), (float(shared_loss), float(full_loss))
    for name, grad in full_grads.items():
        assert torch.allclose(shared_grads[name], grad, rtol=1e-3, atol=1e-5), name
