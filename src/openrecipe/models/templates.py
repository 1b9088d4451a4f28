"""Chat templates: the model's own, a built-in one by name, or a Jinja file — chosen once, then saved with
the trained model and adapter (tokenizer files) and written into every GGUF, so training, eval, serving
and Ollama render conversations the same way.

A base (non-instruct) model ships no template; using one without naming a template is a user error
that names the setting, instead of a failure deep inside tokenization.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from openrecipe.errors import OpenRecipeError
from openrecipe.registry import Registry

SETTING = "chat_template"


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template; `markers` are the control strings it needs as single tokens of the vocabulary,
    `end_of_turn` what ends an assistant reply (the tokenizer's EOS when None)."""

    name: str
    source: str
    markers: tuple[str, ...] = ()
    end_of_turn: str | None = None


BUILTIN_TEMPLATES: Registry[ChatTemplate] = Registry("chat template")

_CHATML = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Llama 3's published template.
_LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Mistral's [INST] format; a system message is put before the first user message, as Mistral's own
# later templates do. Needs only BOS and EOS, so it fits any SentencePiece base model.
_MISTRAL = (
    "{{- bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'] + '\\n\\n' %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set system = '' %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- for message in loop_messages %}"
    "{%- if message['role'] == 'user' %}"
    "{{- '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
    "{%- else %}{{- raise_exception('the mistral template knows only system, user and assistant turns') }}"
    "{%- endif %}{%- endfor %}"
)

# Gemma's turn format; like Gemma's own, a system message is put at the start of the first user turn.
_GEMMA = (
    "{{- bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set first_user_prefix = '' %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- for message in loop_messages %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{- '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '')"
    " + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"
)

# Qwen2.5's published template: ChatML with a default system prompt and tool calls.
_QWEN = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n\
You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments \
within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": \
<args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or \
(message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

for _template in (
    ChatTemplate("chatml", _CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    ChatTemplate("llama3", _LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
    ChatTemplate("mistral", _MISTRAL),
    ChatTemplate("gemma", _GEMMA, ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    ChatTemplate("qwen", _QWEN, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
):
    BUILTIN_TEMPLATES.add(_template.name, _template)


def resolve_chat_template(setting: str | Path, *, base_dir: Path | None = None) -> ChatTemplate:
    """A built-in name (chatml, llama3, mistral, gemma, qwen) or a Jinja file (relative to `base_dir`)."""
    text = str(setting).strip()
    if text in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES.get(text)
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.suffix in (".jinja", ".j2", ".jinja2") or path.is_file():
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise OpenRecipeError(
                f"cannot read chat template file {path}: {error}",
                where=SETTING,
                fix="give a readable UTF-8 Jinja file, or a built-in name: " + ", ".join(BUILTIN_TEMPLATES.names()),
            ) from None
        if not source.strip():
            raise OpenRecipeError(f"chat template file {path} is empty", where=SETTING)
        _check_syntax(source, path)
        return ChatTemplate(path.stem, source)
    raise OpenRecipeError(BUILTIN_TEMPLATES.unknown_message(text), where=SETTING, fix="or give a .jinja file")


def _check_syntax(source: str, path: Path) -> None:
    """A broken Jinja file is the user's to fix, found before any stage runs, not inside tokenization."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"]).parse(source)
    except TemplateSyntaxError as error:
        raise OpenRecipeError(
            f"chat template file {path} is not valid Jinja: {error.message}",
            where=f"{path}:{error.lineno}",
            fix="fix the template (Hugging Face chat templates are Jinja2: {% for message in messages %}...)",
        ) from None


def missing_markers(template: ChatTemplate, tokenizer) -> list[str]:
    """Markers of the template that this tokenizer would split into pieces instead of one control token."""
    missing = []
    for marker in template.markers:
        ids = tokenizer.encode(marker, add_special_tokens=False)
        if len(ids) != 1:
            missing.append(marker)
    return missing


def use_chat_template(
    tokenizer, setting: ChatTemplate | str | Path | None, *, model_name: str, base_dir: Path | None = None
):
    """Give `tokenizer` the template to train and serve with; refuse a model that has none and no setting."""
    if setting is None:
        if not getattr(tokenizer, "chat_template", None):
            raise OpenRecipeError(
                f"{model_name} has no chat template (a base model?), so conversations cannot be rendered",
                where=SETTING,
                fix=f"set `{SETTING}:` in the recipe (or --chat-template on the command line) to a built-in name "
                f"({', '.join(BUILTIN_TEMPLATES.names())}) or a .jinja file; `mistral` needs only BOS/EOS tokens, "
                "so it fits any base model",
            )
        return tokenizer
    template = setting if isinstance(setting, ChatTemplate) else resolve_chat_template(setting, base_dir=base_dir)
    missing = missing_markers(template, tokenizer)
    if missing:
        fitting = [name for name, entry in BUILTIN_TEMPLATES.items() if not missing_markers(entry, tokenizer)]
        raise OpenRecipeError(
            f"the {template.name} chat template needs {', '.join(missing)} as tokens, which {model_name}'s "
            "vocabulary does not have",
            where=SETTING,
            fix=f"use a template whose control tokens the model knows: {', '.join(fitting) or 'a .jinja file'}",
        )
    tokenizer.chat_template = template.source
    return tokenizer


def folder_has_chat_template(folder: Path) -> bool:
    """Whether a saved tokenizer (a model or adapter folder) carries a chat template, read from its files."""
    import json

    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def require_chat_template(tokenizer) -> None:
    """Called before rendering a conversation: the user error that names the setting, not a library's."""
    if not getattr(tokenizer, "chat_template", None):
        model = getattr(tokenizer, "name_or_path", "") or "this model"
        use_chat_template(tokenizer, None, model_name=model)
