"""Run llama.cpp's convert_hf_to_gguf.py on a model folder, in its own process with its own gguf-py.

`python -m openrecipe.export.hf_to_gguf CONVERTER_DIR MODEL_DIR NAME f16=OUT.gguf q8_0=OUT2.gguf`

What is added around the converter (its own code is not changed):
- an architecture it does not know, or a tokenizer it cannot place, ends with one line on stderr starting
  with `USER_ERROR_PREFIX` and exit code `USER_ERROR_EXIT`, which the parent turns into a user error;
- what transformers 5 no longer writes but the converter reads is put back, in a folder of links to the
  model's files: a SentencePiece `tokenizer.model` rebuilt from tokenizer.json (Gemma and Phi-3 are read
  only from that file), and in tokenizer_config.json the added tokens and whether BOS/EOS are added;
- GPT-2 configs saved by transformers 5 lack `n_ctx`; it is read from `n_positions`;
- llama.cpp names a BPE pre-tokenizer by hashing how a fixed text tokenizes, so a tokenizer trained anew
  (new vocabulary, same splitting rules) is unknown to it. Only then, the pre-tokenizer is named from the
  splitting rules written in tokenizer.json, for the rules whose llama.cpp implementation is known to match.
This module imports nothing from openrecipe: it runs before the converter's gguf-py is importable.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

USER_ERROR_PREFIX = "openrecipe-user-error: "
USER_ERROR_EXIT = 3

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# (steps of tokenizer.json's pre_tokenizer) -> llama.cpp's tokenizer.ggml.pre
KNOWN_SPLITTING_RULES: dict[tuple, str] = {
    (("ByteLevel", True),): "gpt-2",
    (("Split", LLAMA3_SPLIT), ("ByteLevel", False)): "llama-bpe",
    (("Split", QWEN2_SPLIT), ("ByteLevel", False)): "qwen2",
    (("Digits", True), ("ByteLevel", True)): "smollm",
}


def splitting_rules(pre_tokenizer: dict | None) -> tuple:
    """tokenizer.json's pre_tokenizer as a comparable tuple of (step, setting)."""
    if not pre_tokenizer:
        return ()
    steps = pre_tokenizer.get("pretokenizers") if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    rules = []
    for step in steps or []:
        kind = step.get("type")
        if kind == "ByteLevel":
            rules.append((kind, bool(step.get("use_regex", True))))
        elif kind == "Split":
            pattern = step.get("pattern", {})
            rules.append((kind, pattern.get("Regex", pattern.get("String"))))
        elif kind == "Digits":
            rules.append((kind, bool(step.get("individual_digits", False))))
        else:
            rules.append((kind, json.dumps(step, sort_keys=True)))
    return tuple(rules)


def pre_tokenizer_name(model_dir: Path) -> str | None:
    try:
        data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return KNOWN_SPLITTING_RULES.get(splitting_rules(data.get("pre_tokenizer")))


def _prepends_space(data: dict) -> bool:
    """Whether the tokenizer adds a leading '▁' to the text (SentencePiece's add_dummy_prefix)."""
    steps = [data.get("pre_tokenizer") or {}, data.get("normalizer") or {}]
    steps += list(steps[0].get("pretokenizers") or []) + list(steps[1].get("normalizers") or [])
    for step in steps:
        if step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") in ("first", "always"):
            return True
        if step.get("type") == "Prepend" and step.get("prepend") == "\u2581":
            return True
    return False


def sentencepiece_from_tokenizer_json(model_dir: Path) -> bytes | None:
    """A SentencePiece model with the vocabulary, piece types and merge order of a byte-fallback BPE
    tokenizer.json (merges rank by piece id, as in SentencePiece's BPE); None for any other tokenizer."""
    try:
        data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        return None
    from sentencepiece import sentencepiece_model_pb2 as protos

    kinds = protos.ModelProto.SentencePiece.Type
    pieces = {index: text for text, index in model["vocab"].items()}
    added = {token["id"]: token for token in data.get("added_tokens", [])}
    unknown = model.get("unk_token")
    proto = protos.ModelProto()
    proto.trainer_spec.model_type = protos.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = _prepends_space(data)
    proto.normalizer_spec.escape_whitespaces = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    for index in range(max([*pieces, *added]) + 1):
        piece = proto.pieces.add()
        text = added[index]["content"] if index in added else pieces.get(index, f"[PAD{index}]")
        piece.piece, piece.score = text, 0.0
        if text == unknown:
            piece.type = kinds.UNKNOWN
        elif index in added:
            piece.type = kinds.CONTROL if added[index].get("special") else kinds.USER_DEFINED
        elif index not in pieces:
            piece.type = kinds.UNUSED
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", text):
            piece.type = kinds.BYTE
        else:
            piece.type, piece.score = kinds.NORMAL, -float(index)
    return proto.SerializeToString()


def tokenizer_config_as_written_before(model_dir: Path) -> dict | None:
    """tokenizer_config.json as the converter expects it, when transformers 5 wrote it differently: the
    added tokens listed under `added_tokens_decoder` (else control tokens such as <start_of_turn> become
    plain vocabulary in llama.cpp) and `add_bos_token`/`add_eos_token` as the tokenizer really behaves
    (else llama.cpp falls back to its own per-family default). None when nothing needs adding."""
    try:
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    changed = dict(config)
    if "added_tokens_decoder" not in config and data.get("added_tokens"):
        fields = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
        changed["added_tokens_decoder"] = {
            str(token["id"]): {key: token[key] for key in fields if key in token} for token in data["added_tokens"]
        }
    if "add_bos_token" not in config or "add_eos_token" not in config:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        with_specials = tokenizer("a")["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        changed.setdefault(
            "add_bos_token", bos is not None and with_specials[: len(with_specials) - len(plain)] == [bos]
        )
        changed.setdefault(
            "add_eos_token", eos is not None and len(with_specials) > len(plain) and with_specials[-1] == eos
        )
    return changed if changed != config else None


def converter_view(model_dir: Path, view: Path) -> Path:
    """`model_dir`, or a folder of links to its files with what the converter needs written beside them."""
    extra: dict[str, bytes] = {}
    if not (model_dir / "tokenizer.model").is_file():
        rebuilt = sentencepiece_from_tokenizer_json(model_dir)
        if rebuilt is not None:
            extra["tokenizer.model"] = rebuilt
    config = tokenizer_config_as_written_before(model_dir)
    if config is not None:
        extra["tokenizer_config.json"] = json.dumps(config, ensure_ascii=False, indent=2).encode()
    if not extra:
        return model_dir
    view = view / model_dir.name  # the converter names the model after its folder: keep that name
    view.mkdir()
    for entry in model_dir.iterdir():
        if entry.name not in extra:
            (view / entry.name).symlink_to(entry.resolve())
    for name, data in extra.items():
        (view / name).write_bytes(data)
    return view


def user_error(message: str) -> None:
    print(USER_ERROR_PREFIX + message, file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)


def _install_fallback(text_model) -> None:
    recognized = text_model.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return recognized(self, tokenizer)
        except NotImplementedError:
            name = pre_tokenizer_name(Path(self.dir_model))
            if name is None:
                user_error(
                    "llama.cpp's converter does not recognize this BPE tokenizer's pre-tokenizer, and its "
                    "splitting rules in tokenizer.json match none that openrecipe can name"
                )
            return name

    text_model.get_vocab_base_pre = get_vocab_base_pre


def _install_hparam_aliases(model_base) -> None:
    """GPT-2 configs saved by transformers 5 no longer carry `n_ctx`, which the converter reads."""
    load = model_base.load_hparams

    def load_hparams(dir_model, is_mistral_format):
        hparams = load(dir_model, is_mistral_format)
        if "n_positions" in hparams:
            hparams.setdefault("n_ctx", hparams["n_positions"])
        return hparams

    model_base.load_hparams = staticmethod(load_hparams)


def main(argv: list[str]) -> None:
    """CONVERTER_DIR MODEL_DIR NAME OUTTYPE=PATH [OUTTYPE=PATH ...]: one process, one file per type."""
    converter, model_dir, name, *targets = argv
    with tempfile.TemporaryDirectory(prefix="openrecipe-convert-") as view:
        folder = converter_view(Path(model_dir), Path(view))
        sys.path[:0] = [converter, str(Path(converter) / "gguf-py")]
        import convert_hf_to_gguf
        from conversion import ModelBase, ModelType, TextModel, get_model_architecture, get_model_class

        _install_hparam_aliases(ModelBase)
        architecture = get_model_architecture(ModelBase.load_hparams(folder, False), ModelType.TEXT)
        try:
            get_model_class(architecture, mmproj=False)
        except NotImplementedError:
            user_error(f"llama.cpp's converter does not support the architecture {architecture!r}")
        _install_fallback(TextModel)
        for target in targets:
            outtype, path = target.split("=", 1)
            sys.argv = ["convert_hf_to_gguf.py", str(folder), "--outfile", path, "--outtype", outtype]
            sys.argv += ["--model-name", name]
            convert_hf_to_gguf.main()  # reads sys.argv


if __name__ == "__main__":
    main(sys.argv[1:])
