"""The Ollama Modelfile speaks the model's chat format, or leaves it to the template inside the GGUF."""

from __future__ import annotations

from openrecipe.export.ollama import modelfile
from openrecipe.models.templates import BUILTIN_TEMPLATES


def test_known_formats_get_their_template_and_stop_tokens():
    chatml = modelfile("m.gguf", BUILTIN_TEMPLATES.get("chatml").source, "You are Nova.", "<|im_end|>")
    assert "<|im_start|>assistant" in chatml and 'PARAMETER stop "<|im_end|>"' in chatml
    llama3 = modelfile("m.gguf", BUILTIN_TEMPLATES.get("llama3").source, None, "<|eot_id|>")
    assert 'PARAMETER stop "<|eot_id|>"' in llama3 and "SYSTEM" not in llama3
    gemma = modelfile("m.gguf", BUILTIN_TEMPLATES.get("gemma").source, "Be brief.", "<eos>")
    assert "<start_of_turn>model" in gemma and 'PARAMETER stop "<end_of_turn>"' in gemma
    assert 'SYSTEM """Be brief."""' in gemma


def test_other_formats_use_the_template_embedded_in_the_gguf():
    text = modelfile("m.gguf", BUILTIN_TEMPLATES.get("mistral").source, None, "</s>")
    assert text.startswith("FROM ./m.gguf\n") and "TEMPLATE" not in text
    assert 'PARAMETER stop "</s>"' in text
