"""Compare runs (leaderboards with intervals, the prompting-first verdict, loss curves), chat with two
models side by side, and ship: downloads, the publish bundle, a private server with a key shown once."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from openrecipe.errors import OpenRecipeError
from openrecipe.ui.auth import hash_secret
from openrecipe.utils.hashing import sha256_json

router = APIRouter()


def _job(request: Request, job_id: int) -> dict[str, Any]:
    job = request.app.state.store.job(job_id)
    if job is None:
        raise HTTPException(404)
    return job


def _report(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "report.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {"stages": []}


def run_summary(job: dict[str, Any]) -> dict[str, Any]:
    """Leaderboards of every eval stage, the verdict against the prompting baseline, and loss curves."""
    run_dir = Path(job["run_dir"])
    boards = []
    for path in sorted(run_dir.glob("*/leaderboard.json")):
        board = json.loads(path.read_text())
        boards.append({"stage": path.parent.name, **board})
    curves = {}
    for path in sorted(run_dir.glob("*/metrics.jsonl")):
        points = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "loss" in row and "step" in row:
                points.append([row["step"], row["loss"]])
        curves[path.parent.name] = points
    return {"id": job["id"], "name": job["name"], "state": job["state"], "leaderboards": boards, "curves": curves}


@router.get("/compare")
async def compare_page(request: Request):
    return request.app.state.render(request, "compare.html", jobs=request.app.state.store.jobs())


@router.get("/api/compare")
async def compare(request: Request, ids: str):
    wanted = [int(i) for i in ids.split(",") if i.strip().isdigit()]
    return {"runs": [run_summary(_job(request, i)) for i in wanted]}


def model_choices(request: Request) -> list[dict[str, str]]:
    """Models a user may chat with: each run's base model and every model, adapter or GGUF it produced."""
    choices: dict[str, str] = {"default": "default (SmolLM2-135M-Instruct)"}
    for job in request.app.state.store.jobs():
        run_dir = Path(job["run_dir"])
        try:
            resolved = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
            base = str(resolved.get("base_model", "default"))
            recipe_dir = Path(job["recipe"]).parent
            if base != "default" and (recipe_dir / base).exists():
                base = str((recipe_dir / base).resolve())
            choices.setdefault(base, f"{job['name']}: base model")
        except (OSError, yaml.YAMLError, AttributeError):
            pass
        for stage in _report(run_dir).get("stages", []):
            for name, relative in (stage.get("artifacts") or {}).items():
                path = run_dir / relative
                usable = path.is_dir() and (
                    (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
                )
                if usable or path.suffix == ".gguf":
                    choices[str(path)] = f"{job['name']}: {stage['id']}/{name}"
    # Pages see an opaque key per model, never a server path.
    return [{"key": sha256_json(model)[:16], "model": model, "label": label} for model, label in choices.items()]


@router.get("/chat")
async def chat_page(request: Request):
    return request.app.state.render(request, "chat.html", choices=model_choices(request))


@router.post("/api/chat")
async def chat(request: Request):
    from openrecipe.ui.chat import stream_reply

    body = await request.json()
    known = {choice["key"]: choice["model"] for choice in model_choices(request)}
    model = known.get(str(body.get("model", "")))
    if model is None:
        raise OpenRecipeError("choose a model from the list")
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in body.get("messages", [])]
    system = body.get("system") or None
    max_tokens = min(int(body.get("max_tokens", 128)), 512)

    async def stream():
        try:
            async for piece in stream_reply(model, messages, system, max_tokens):
                yield f"data: {json.dumps(piece, ensure_ascii=False)}\n\n"
        except OpenRecipeError as error:
            yield f"data: {json.dumps({'error': error.format()})}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def downloads(job: dict[str, Any]) -> list[dict[str, Any]]:
    run_dir = Path(job["run_dir"])
    found = []
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and (path.suffix == ".gguf" or path.name == "Modelfile"):
            found.append({"path": path.relative_to(run_dir).as_posix(), "bytes": path.stat().st_size})
    return found


@router.get("/ship")
async def ship_page(request: Request):
    store = request.app.state.store
    runs = [{**job, "downloads": downloads(job)} for job in store.jobs()]
    servers = store.query("SELECT id, artifact, port, pid, created FROM servers ORDER BY id DESC")
    from openrecipe.ui.jobs import is_alive

    servers = [{**s, "artifact": Path(s["artifact"]).name} for s in servers if is_alive(s["pid"])]
    return request.app.state.render(request, "ship.html", runs=runs, servers=servers)


@router.get("/download/{job_id}")
async def download(request: Request, job_id: int, path: str):
    run_dir = Path(_job(request, job_id)["run_dir"]).resolve()
    target = (run_dir / path).resolve()
    if run_dir not in target.parents or not target.is_file():
        raise HTTPException(404)
    return FileResponse(target, filename=target.name)


@router.get("/download/{job_id}/bundle.zip")
async def bundle(request: Request, job_id: int):
    import shutil

    from openrecipe.publish.bundle import publish

    job = _job(request, job_id)
    work = Path(tempfile.mkdtemp(prefix="openrecipe-bundle-", dir=request.app.state.settings.workspace))
    await asyncio.to_thread(publish, Path(job["run_dir"]), work / job["name"])
    archive = await asyncio.to_thread(shutil.make_archive, str(work / job["name"]), "zip", work, job["name"])
    cleanup = BackgroundTask(shutil.rmtree, work, ignore_errors=True)  # after the download is sent
    return FileResponse(archive, filename=f"{job['name']}-bundle.zip", background=cleanup)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@router.post("/api/servers")
async def start_server(request: Request):
    """`openrecipe serve ARTIFACT` on 127.0.0.1 with a new API key; only its hash is kept."""
    body = await request.json()
    job = _job(request, int(body["job"]))
    run_dir = Path(job["run_dir"]).resolve()
    artifact = (run_dir / str(body["path"])).resolve()
    if run_dir not in artifact.parents or not artifact.exists():
        raise HTTPException(404)
    key = "sk-or-" + secrets.token_urlsafe(24)
    port = _free_port()
    native = artifact.suffix == ".gguf" and importlib.util.find_spec("llama_cpp") is not None
    engine = "llamacpp" if native else "transformers"  # transformers dequantizes a GGUF when llama.cpp is absent
    log = open(run_dir / f"serve-{port}.log", "ab")  # noqa: SIM115 (handed to the child)
    process = subprocess.Popen(
        [sys.executable, "-m", "openrecipe", "serve", str(artifact), "--port", str(port), "--engine", engine],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "OPENRECIPE_API_KEY": key},
    )
    with request.app.state.store.transaction() as db:
        db.execute(
            "INSERT INTO servers (artifact, port, pid, key_hash, created) VALUES (?, ?, ?, ?, ?)",
            (str(artifact), port, process.pid, hash_secret(key), time.time()),
        )
    return {"key": key, "endpoint": f"http://127.0.0.1:{port}/v1", "pid": process.pid}
