"""`chat` and `generate`: try a model before training anything."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console()


def register(app: typer.Typer) -> None:
    app.command(help="Chat with a model: one prompt with -p, or an interactive session.")(chat)
    app.command(help="Batched generation: one output row per input row, in order.")(generate)


def chat(
    model: str = typer.Argument(..., help="'default', a model folder, an adapter folder, a .gguf file or a hub id"),
    prompt: str | None = typer.Option(None, "-p", "--prompt", help="Ask one question and print the reply."),
    system: str | None = typer.Option(None, "--system", help="System prompt."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy (deterministic)."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run code shipped with the model."),
    chat_template: str | None = typer.Option(
        None, "--chat-template", help="Built-in template (chatml, llama3, mistral, gemma, qwen) or a .jinja file."
    ),
) -> None:
    from openrecipe.models.generation import GenerationSettings, build_messages, stream_reply
    from openrecipe.models.loading import load_model

    with console.status(f"loading {model} ..."):
        loaded = load_model(
            model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, chat_template=chat_template
        )
    settings = GenerationSettings(max_new_tokens, temperature, top_p, seed)
    if prompt is not None:
        reply = "".join(stream_reply(loaded, build_messages(prompt, system), settings))
        print(reply.strip())
        return
    console.print(f"[dim]chatting with {model} — /reset clears the history, /exit quits[/dim]")
    history: list[dict[str, str]] = []
    while True:
        try:
            text = console.input("[bold cyan]you>[/bold cyan] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        command = text.strip()
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            history.clear()
            console.print("[dim]history cleared[/dim]")
            continue
        if not command:
            continue
        messages = build_messages(text, system, history)
        console.print("[bold green]model>[/bold green] ", end="")
        pieces = []
        for piece in stream_reply(loaded, messages, settings):
            pieces.append(piece)
            console.print(piece, end="", markup=False, highlight=False)
        console.print()
        history.extend([{"role": "user", "content": text}, {"role": "assistant", "content": "".join(pieces).strip()}])


def generate(
    model: str = typer.Argument(..., help="Any model reference (see `chat`)."),
    input: Path = typer.Option(
        ..., "--input", "-i", help='JSONL: one {"prompt": ...} or {"messages": [...]} per line.'
    ),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL written with the input row plus `reply`."),
    system: str | None = typer.Option(None, "--system", help="System prompt for rows without one."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0),
    seed: int = typer.Option(0, "--seed"),
    dtype: str = typer.Option("auto", "--dtype"),
    device: str = typer.Option("auto", "--device"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    chat_template: str | None = typer.Option(
        None, "--chat-template", help="Built-in template (chatml, llama3, mistral, gemma, qwen) or a .jinja file."
    ),
) -> None:
    from openrecipe.errors import OpenRecipeError
    from openrecipe.models.generation import GenerationSettings, generate_texts
    from openrecipe.models.loading import load_model
    from openrecipe.stages.generate import read_prompt_file
    from openrecipe.utils.fs import atomic_write_text

    if output.resolve() == input.resolve():
        raise OpenRecipeError("--output is the same file as --input", fix="write to a new file")
    conversations = read_prompt_file(input, system)
    rows = [json.loads(line) for line in input.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    with console.status(f"loading {model} ..."):
        loaded = load_model(
            model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, chat_template=chat_template
        )
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    with Progress(
        TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        task = progress.add_task("generate", total=len(conversations))
        replies = generate_texts(
            loaded,
            conversations,
            settings,
            batch_size=batch_size,
            on_batch=lambda n: progress.advance(task, n),
        )
    atomic_write_text(
        output,
        "".join(
            json.dumps({**row, "reply": reply}, ensure_ascii=False) + "\n"
            for row, reply in zip(rows, replies, strict=True)
        ),
    )
    console.print(f"wrote {len(replies)} rows to {output}")
