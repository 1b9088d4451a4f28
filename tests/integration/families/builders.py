"""Tiny random models of every common family, each with a real tokenizer trained here (never downloaded).

SentencePiece families (Llama-2-style, Mistral, Gemma, Phi-3) get a BPE model with byte fallback trained
with `sentencepiece` and saved as `tokenizer.model` next to the tokenizer.json transformers converts it
to, as on the Hub; byte-level BPE families (Llama 3, Qwen2, GPT-2) get a `tokenizers` BPE with their
own pre-tokenizer rules and special tokens.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from openrecipe.models.templates import use_chat_template

HIDDEN, LAYERS, HEADS, KV_HEADS, CONTEXT = 64, 2, 4, 2, 256

_LINES = [
    "Hello, world! This is a small test of the tokenizer and the model.",
    "The quick brown fox jumps over the lazy dog; it was 12345 metres away, or 3.14 km.",
    "Customer support answers questions about returns, orders and opening hours.",
    "你好，世界！我们正在测试分词器和模型。",
    "北京是中国的首都。今天天气很好，我们去公园散步吧。",
    "def add(a, b):\n    return a + b  # the sum\n",
    "for i in range(10):\n\tprint(f'{i}: {i ** 2}')\n",
    "if (x != null && y >= 0) { return x.value; }",
    "Emoji: 🚀 rocket, 😀 smile, 🦙 llama, ✅ done, 👍🏽 thumbs up.",
    "Café, naïve, résumé, Straße, Ærøskøbing — accents and dashes.",
    "  Two leading spaces, trailing spaces   and\nnew lines\n\nhere.",
]
CORPUS = _LINES * 40

PARITY_TEXT = (
    "Hello, world! 你好，世界。 🚀🦙👍🏽 def add(a, b):\n    return a + b  # sum\n"
    "\tTabs,  double  spaces, 12345 and 3.14; Café naïve Ω ∑ ≠ — 'quoted' \"text\"."
)


@dataclass(frozen=True)
class Family:
    name: str
    architecture: str
    build: Callable[[Path], Path]
    gguf_architecture: str
    tokenizer_model: str  # GGUF tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)


def _train_sentencepiece(
    folder: Path, *, vocab_size: int, add_dummy_prefix: bool, ids: dict[str, int], symbols: list[str]
) -> Path:
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_prefix=str(folder / "sp"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        add_dummy_prefix=add_dummy_prefix,
        user_defined_symbols=symbols,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
        **ids,
    )
    return folder / "sp.model"


def _sentencepiece_tokenizer(folder: Path, model_file: Path, config: dict, specials: list[str] = ()):
    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if specials:
        tokenizer.add_special_tokens({"additional_special_tokens": list(specials)})
    return tokenizer


def _bpe_tokenizer(pre_tokenizer, specials: list[str], *, vocab_size: int = 1200, bos: str | None = None, **tokens):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer)
    if bos:
        bos_id = backend.token_to_id(bos)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, **tokens)


def _save(folder: Path, model, tokenizer) -> Path:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _ids(tokenizer) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _llama_shape() -> dict:
    return {
        "hidden_size": HIDDEN,
        "intermediate_size": HIDDEN * 2,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": CONTEXT,
        "tie_word_embeddings": False,
    }


_SPM_IDS = {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
_LLAMA_TOKENIZER = {
    "tokenizer_class": "LlamaTokenizer",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "add_bos_token": True,
    "add_eos_token": False,
    "legacy": True,  # as Llama 2 and Mistral ship it: '▁' before the text after every control token
}


def build_llama_spm(folder: Path, *, architecture: str = "llama") -> Path:
    """Llama-2 style: SentencePiece BPE with byte fallback, BOS added, no chat template (a base model)."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    model_file = _train_sentencepiece(
        folder.parent / f"{folder.name}-sp", vocab_size=1000, add_dummy_prefix=True, ids=_SPM_IDS, symbols=[]
    )
    tokenizer = _sentencepiece_tokenizer(folder, model_file, _LLAMA_TOKENIZER)
    tokenizer.pad_token = tokenizer.unk_token
    use_chat_template(tokenizer, "mistral", model_name=folder.name)  # a base model: the recipe names a template
    torch.manual_seed(0)
    if architecture == "mistral":
        model = MistralForCausalLM(MistralConfig(**_llama_shape(), **_ids(tokenizer), sliding_window=None))
    else:
        model = LlamaForCausalLM(LlamaConfig(**_llama_shape(), **_ids(tokenizer)))
    return _save(folder, model, tokenizer)


def build_mistral(folder: Path) -> Path:
    return build_llama_spm(folder, architecture="mistral")


def build_phi3(folder: Path) -> Path:
    """Phi-3: the Llama SentencePiece vocabulary plus its chat control tokens and its own template."""
    from tokenizers import AddedToken
    from transformers import Phi3Config, Phi3ForCausalLM

    specials = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    model_file = _train_sentencepiece(
        folder.parent / f"{folder.name}-sp", vocab_size=1000, add_dummy_prefix=True, ids=_SPM_IDS, symbols=[]
    )
    config = {**_LLAMA_TOKENIZER, "eos_token": "<|endoftext|>", "add_bos_token": False}
    tokenizer = _sentencepiece_tokenizer(folder, model_file, {k: v for k, v in config.items() if k != "eos_token"})
    # as Phi-3 ships them: chat tokens swallow the whitespace after them (llama.cpp does the same for phi3)
    tokenizer.add_special_tokens(
        {
            "additional_special_tokens": [
                AddedToken(token, rstrip=token != specials[0], special=True) for token in specials
            ]
        }
    )
    tokenizer.eos_token = "<|endoftext|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    )
    torch.manual_seed(0)
    shape = {**_llama_shape(), "original_max_position_embeddings": CONTEXT}
    model = Phi3ForCausalLM(Phi3Config(**shape, **_ids(tokenizer)))
    return _save(folder, model, tokenizer)


def build_gemma3(folder: Path) -> Path:
    """Gemma 3 (text): SentencePiece without a dummy prefix, <bos> added, turn tokens, the gemma template."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    ids = {"pad_id": 0, "eos_id": 1, "bos_id": 2, "unk_id": 3, "pad_piece": "<pad>", "eos_piece": "<eos>"}
    ids["bos_piece"] = "<bos>"
    symbols = ["<start_of_turn>", "<end_of_turn>"]
    model_file = _train_sentencepiece(
        folder.parent / f"{folder.name}-sp", vocab_size=1000, add_dummy_prefix=False, ids=ids, symbols=symbols
    )
    config = {
        "tokenizer_class": "GemmaTokenizer",
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "add_bos_token": True,
        "add_eos_token": False,
    }
    tokenizer = _sentencepiece_tokenizer(folder, model_file, config, specials=symbols)
    use_chat_template(tokenizer, "gemma", model_name=folder.name)
    torch.manual_seed(0)
    shape = {**_llama_shape(), "head_dim": HIDDEN // HEADS, "sliding_window": 128, "tie_word_embeddings": True}
    shape["query_pre_attn_scalar"] = HIDDEN // HEADS  # as in Gemma 3 (llama.cpp scales queries by head_dim)
    model = Gemma3ForCausalLM(Gemma3TextConfig(**shape, **_ids(tokenizer)))
    return _save(folder, model, tokenizer)


def build_llama3(folder: Path) -> Path:
    """Llama 3: byte-level BPE with Llama 3's split rules, <|begin_of_text|> added, the llama3 template."""
    from tokenizers import Regex, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM

    from openrecipe.export.hf_to_gguf import LLAMA3_SPLIT

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer = _bpe_tokenizer(
        pre, specials, bos="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|end_of_text|>"
    )
    use_chat_template(tokenizer, "llama3", model_name=folder.name)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**_llama_shape(), **_ids(tokenizer), rope_theta=500000.0))
    folder.mkdir(parents=True, exist_ok=True)
    return _save(folder, model, tokenizer)


def build_qwen2(folder: Path, *, template: str | None = "qwen") -> Path:
    """Qwen2: byte-level BPE with Qwen2's split rules (single digits), no BOS, the qwen template (None: a base
    model with the ChatML tokens in its vocabulary but no chat template)."""
    from tokenizers import Regex, pre_tokenizers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from openrecipe.export.hf_to_gguf import QWEN2_SPLIT

    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer = _bpe_tokenizer(
        pre, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    if template is not None:
        use_chat_template(tokenizer, template, model_name=folder.name)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**_llama_shape(), **_ids(tokenizer)))
    folder.mkdir(parents=True, exist_ok=True)
    return _save(folder, model, tokenizer)


def build_gpt2(folder: Path) -> Path:
    """GPT-2: byte-level BPE with GPT-2's split rules; ChatML control tokens added, the chatml template."""
    from tokenizers import pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer = _bpe_tokenizer(
        pre,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    use_chat_template(tokenizer, "chatml", model_name=folder.name)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        n_positions=CONTEXT,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    return _save(folder, model, tokenizer)


FAMILIES = {
    family.name: family
    for family in (
        Family("llama-spm", "LlamaForCausalLM", build_llama_spm, "llama", "llama"),
        Family("llama3-bpe", "LlamaForCausalLM", build_llama3, "llama", "gpt2"),
        Family("mistral", "MistralForCausalLM", build_mistral, "llama", "llama"),
        Family("qwen2", "Qwen2ForCausalLM", build_qwen2, "qwen2", "gpt2"),
        Family("gemma3", "Gemma3ForCausalLM", build_gemma3, "gemma3", "llama"),
        Family("phi3", "Phi3ForCausalLM", build_phi3, "phi3", "llama"),
        Family("gpt2", "GPT2LMHeadModel", build_gpt2, "gpt2", "gpt2"),
    )
}
