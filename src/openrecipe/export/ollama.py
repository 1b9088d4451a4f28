"""An Ollama Modelfile whose TEMPLATE reproduces the model's chat template (ChatML, Llama 3, Gemma); for
any other template no TEMPLATE is written, and Ollama takes the one embedded in the GGUF."""

from __future__ import annotations

from pathlib import Path


def modelfile(gguf_name: str, chat_template: str, system_prompt: str | None, eos_token: str) -> str:
    if "<|im_start|>" in chat_template:
        template = (
            "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
            "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
            "<|im_start|>assistant\n"
        )
        stops = ["<|im_end|>", "<|im_start|>"]
    elif "<|start_header_id|>" in chat_template:
        template = (
            "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
            "{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
            "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
        )
        stops = ["<|eot_id|>"]
    elif "<start_of_turn>" in chat_template:
        template = (
            '{{ range $i, $m := .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user'
            "{{ end }}\n{{ if and (eq $i 0) $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n"
            "{{ end }}<start_of_turn>model\n"
        )
        stops = ["<end_of_turn>"]
    else:
        template, stops = None, [eos_token] if eos_token else []
    lines = [f"FROM ./{gguf_name}"]
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    if system_prompt:
        lines.append(f'SYSTEM """{system_prompt}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def write_modelfile(out: Path, gguf_name: str, chat_template: str, system_prompt: str | None, eos: str) -> Path:
    out.write_text(modelfile(gguf_name, chat_template, system_prompt, eos), encoding="utf-8")
    return out
