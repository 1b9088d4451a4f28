import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.export.gguf_export import export_gguf, read_back
from openrecipe.export.ollama import modelfile
from openrecipe.models.llamacpp import load_llama_cpp
from openrecipe.models.loading import load_model
from openrecipe.quantize.torchao_backend import QUANTIZERS, quantize_folder


def logits(loaded, ids):
    with torch.no_grad():
        return loaded.model(input_ids=torch.tensor([ids], device=loaded.device)).logits[0].float()


@pytest.mark.parametrize("method", QUANTIZERS.names())  # contract: every registered method round-trips
def test_quantize_save_reload_roundtrip(tmp_path, tiny_model_dir, method):
    out = quantize_folder(tiny_model_dir, tmp_path / method, method)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    quantized = load_model(str(out), dtype="float32")
    original = load_model(str(tiny_model_dir), dtype="float32")
    ids = [1, 50, 300, 4000, 12]
    difference = (logits(quantized, ids) - logits(original, ids)).abs().mean() / logits(original, ids).abs().mean()
    assert difference < 0.1


def test_unknown_quantization_method(tmp_path, tiny_model_dir):
    with pytest.raises(OpenRecipeError, match="unknown quantization method 'int3'"):
        quantize_folder(tiny_model_dir, tmp_path / "x", "int3")


def test_gguf_export_reads_back_and_loads_in_transformers(tmp_path, tiny_model_dir):
    files = export_gguf(tiny_model_dir, tmp_path, ["f16", "q8_0"], name="tiny")
    info = read_back(tmp_path / "tiny-q8_0.gguf")
    assert info["architecture"] == "llama" and info["has_chat_template"]
    assert info["tensor_types"]["Q8_0"] > 0 and info["tensor_types"]["F32"] > 0  # norms stay F32
    assert info["tokenizer"] == "gpt2" and info["pre_tokenizer"] == "smollm"
    assert files["q8_0"]["size_bytes"] < files["f16"]["size_bytes"]
    from gguf import GGUFReader

    names = {t.name for t in GGUFReader(str(tmp_path / "tiny-f16.gguf")).tensors}
    assert {
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.1.ffn_down.weight",
        "output_norm.weight",
    } <= names
    original = load_model(str(tiny_model_dir), dtype="float32")
    ids = [1, 50, 300, 4000, 12]
    for qtype, tolerance in (("f16", 1e-2), ("q8_0", 5e-2)):
        loaded = load_model(str(tmp_path / f"tiny-{qtype}.gguf"), dtype="float32")
        torch.testing.assert_close(logits(loaded, ids), logits(original, ids), atol=tolerance, rtol=0)
        assert loaded.tokenizer.chat_template == original.tokenizer.chat_template


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_llama_cpp_quantizes_and_runs_the_export(tmp_path, tiny_model_dir):
    Llama = load_llama_cpp().Llama
    export_gguf(tiny_model_dir, tmp_path, ["q8_0", "q4_k_m", "q4_0"], name="tiny")
    assert read_back(tmp_path / "tiny-q4_0.gguf")["tensor_types"]["Q4_0"] > 0
    assert read_back(tmp_path / "tiny-q4_k_m.gguf")["tensors"] > 0
    llama = Llama(model_path=str(tmp_path / "tiny-q4_k_m.gguf"), n_ctx=128, verbose=False)
    try:
        out = llama.create_completion("hello", max_tokens=4, temperature=0)
        assert out["usage"]["completion_tokens"] >= 1
    finally:
        llama.close()


def test_modelfile_template_and_stops():
    text = modelfile("m.gguf", "{{ '<|im_start|>' }}", "You are Nova.", "<|im_end|>")
    assert text.startswith("FROM ./m.gguf")
    assert 'PARAMETER stop "<|im_end|>"' in text and 'SYSTEM """You are Nova."""' in text
    assert "<|im_start|>assistant" in text


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_importance_matrix_covers_every_linear_layer_and_feeds_the_quantizer(tmp_path, tiny_model_dir):
    from openrecipe.export.importance import importance_matrix

    Llama = load_llama_cpp().Llama

    f16 = export_gguf(tiny_model_dir, tmp_path / "f16", ["f16"], name="tiny")["f16"]["path"]
    texts = ["The sea is wide and deep.", "Mountains are tall."]
    matrix, tokens = importance_matrix(tiny_model_dir, texts, gguf_file=Path(f16))
    assert tokens > 5
    assert set(matrix) == {
        f"blk.{i}.{n}.weight"
        for i in range(2)
        for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    } | {"token_embd.weight"}
    assert matrix["blk.0.ffn_down.weight"].shape == (128,) and (matrix["blk.0.attn_q.weight"] > 0).all()
    files = export_gguf(tiny_model_dir, tmp_path, ["q4_k_m"], name="tiny", calibration=["The sea is wide."] * 3)
    assert files["q4_k_m"]["imatrix_tensors"] == len(matrix) and files["q4_k_m"]["calibration_tokens"] > 0
    llama = Llama(model_path=files["q4_k_m"]["path"], n_ctx=128, verbose=False)
    try:
        assert llama.create_completion("hello", max_tokens=3, temperature=0)["usage"]["completion_tokens"] >= 1
    finally:
        llama.close()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_importance_matrix_batches_texts_without_counting_their_padding(tmp_path, tiny_model_dir):
    from openrecipe.export.importance import importance_matrix

    f16 = Path(export_gguf(tiny_model_dir, tmp_path, ["f16"], name="tiny")["f16"]["path"])
    texts = ["Hi.", "The sea is wide and deep, and the ships on it are small.", "Mountains are tall and old."]
    alone, tokens_alone = importance_matrix(tiny_model_dir, texts, gguf_file=f16, batch_rows=1)
    batched, tokens_batched = importance_matrix(tiny_model_dir, texts, gguf_file=f16, batch_rows=8)
    assert tokens_alone == tokens_batched
    for name, values in alone.items():
        np.testing.assert_allclose(batched[name], values, rtol=1e-4)


def test_a_token_cap_takes_texts_evenly_across_the_calibration_data(tokenizer):
    from openrecipe.export.importance import calibration_batches

    texts = [f"faq answer number {n} about returns and warranty" for n in range(40)]
    texts += [f"replayed general answer number {n} about capitals and rivers" for n in range(20)]
    everything, total = calibration_batches(tokenizer, texts, context=512, max_tokens=10**6)
    assert sum(int(mask.sum()) for _, mask in everything) == total
    for cap in (200, total * 6 // 10):  # a quarter of the text, and a cap that the first source alone fills
        batches, taken = calibration_batches(tokenizer, texts, context=512, max_tokens=cap, rows=64)
        rows = [tokenizer.decode(r[m]) for tokens, masks in batches for r, m in zip(tokens, masks, strict=True)]
        assert cap / 2 < taken <= cap
        assert any("faq" in row for row in rows) and any("replayed" in row for row in rows)  # both sources


def test_importance_matrix_needs_text(tiny_model_dir, tmp_path):
    from openrecipe.export.importance import importance_matrix

    with pytest.raises(OpenRecipeError, match="no calibration text"):
        importance_matrix(tiny_model_dir, [], gguf_file=tmp_path / "unused.gguf")


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_export_command_with_calibration_data(tmp_path, tiny_model_dir):
    import json

    from typer.testing import CliRunner

    from openrecipe.cli.main import app

    (tmp_path / "faq.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]})
        + "\n"
    )
    args = ["export", str(tiny_model_dir), "--gguf", "q4_k_m", "--name", "t", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--calibration", str(tmp_path / "faq.jsonl")])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "out" / "gguf.json").read_text())["q4_k_m"]
    assert info["calibration_tokens"] > 0 and info["imatrix_tensors"] == 15
    assert (tmp_path / "out" / "Modelfile").is_file()
    # one summary line for the K-quant fallbacks; llama.cpp's own lines are in the log, not the output
    assert f"{info['fallback_tensors']} of {info['quantized_tensors']} tensors used a fallback type" in result.output
    assert "falling back" not in result.output and "falling back" in (tmp_path / "out" / "native.log").read_text()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_a_stale_f16_file_is_never_quantized(tmp_path, tiny_model_dir, tiny_model_dir_b):
    export_gguf(tiny_model_dir_b, tmp_path / "out", ["f16"], name="tiny")  # another model's file left behind
    again = export_gguf(tiny_model_dir, tmp_path / "out", ["q4_k_m", "f16"], name="tiny")
    clean = export_gguf(tiny_model_dir, tmp_path / "clean", ["q4_k_m"], name="tiny")
    assert Path(again["q4_k_m"]["path"]).read_bytes() == Path(clean["q4_k_m"]["path"]).read_bytes()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_export_stage_calibrates_on_an_earlier_stage(tmp_path, tiny_model_dir):
    import json

    import yaml
    from typer.testing import CliRunner

    from openrecipe.cli.main import app

    (tmp_path / "faq.jsonl").write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
            for q, a in [("Returns?", "Within 30 days."), ("Opening hours?", "9 to 5, Monday to Friday.")]
        )
    )
    recipe = {
        "name": "calibrated",
        "base_model": str(tiny_model_dir),
        "stages": [
            {"id": "data", "kind": "clean", "sources": [{"path": "faq.jsonl"}]},
            {"id": "export", "kind": "export", "gguf": ["q4_k_m"], "calibration": [{"path": "stage:data"}]},
        ],
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "export" / "gguf.json").read_text())["q4_k_m"]
    assert info["imatrix_tensors"] == 15 and info["calibration_tokens"] > 10


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_k_quant_fallbacks_are_counted_and_their_chatter_goes_to_the_log(tmp_path, tiny_model_dir, capfd):
    from openrecipe.export.llama_quantize import fallback_line

    files = export_gguf(tiny_model_dir, tmp_path, ["q4_k_m"], name="tiny")
    row = files["q4_k_m"]
    terminal = capfd.readouterr()
    log = (tmp_path / "native.log").read_text()
    # hidden size 64: no row of a 2-D weight divides into 256-column K-quant blocks
    assert row["fallback_tensors"] > 0 and row["fallback_tensors"] <= row["quantized_tensors"]
    assert log.count("not divisible by 256") == row["fallback_tensors"]
    assert sum(row["fallback_types"].values()) == row["fallback_tensors"] and "q4_K->q5_0" in row["fallback_types"]
    assert row["fallback_divisors"] == [256]
    assert "fallback" not in terminal.out + terminal.err
    line = fallback_line(row)
    assert line.startswith(f"{row['fallback_tensors']} of {row['quantized_tensors']} tensors used a fallback type")
    assert line.endswith("(rows not divisible by 256)")
    assert export_gguf(tiny_model_dir, tmp_path / "q8", ["q8_0"], name="tiny")["q8_0"].get("fallback_tensors", 0) == 0
