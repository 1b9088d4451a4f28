"""Recipes without YAML (a form generated from the recipe's JSON schema) and runs that survive the browser."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import yaml
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from openrecipe.errors import MultipleErrors, OpenRecipeError
from openrecipe.ui import jobs
from openrecipe.ui.app import public_message

router = APIRouter()
SHIPPED_RECIPES = Path(__file__).resolve().parents[3] / "recipes"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def templates(request: Request) -> dict[str, Path]:
    """Shipped recipes (in a source checkout) and the workspace's own, by name."""
    found: dict[str, Path] = {}
    for folder in (SHIPPED_RECIPES, request.app.state.settings.recipes_dir):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                if not path.name.startswith("."):
                    found[path.stem] = path
    return found


@router.get("/recipe")
async def recipe_page(request: Request, template: str | None = None):
    return request.app.state.render(request, "recipe.html", templates=list(templates(request)), current=template)


@router.get("/api/recipe/schema")
async def schema():
    from openrecipe.recipe.schema import recipe_json_schema

    return recipe_json_schema()


@router.get("/api/recipe/template")
async def template(request: Request, name: str):
    found = templates(request)
    if name not in found:
        raise HTTPException(404)
    path = found[name]
    if path.parent == request.app.state.settings.recipes_dir:
        return {"yaml": path.read_text(encoding="utf-8")}
    return {"yaml": await asyncio.to_thread(anchored_template, path)}


def anchored_template(path: Path) -> str:
    """A shipped recipe whose relative input paths are made absolute: saved in the workspace, it must still
    read the files beside the original (the recipe's own references say which fields are paths)."""
    from openrecipe.config.references import PathRef, iter_references, resolve_location
    from openrecipe.recipe.schema import load_recipe

    text = path.read_text(encoding="utf-8")
    try:
        recipe = load_recipe(path)
    except OpenRecipeError:
        return text
    data = yaml.safe_load(text)
    for loc, reference in iter_references(recipe):
        if not isinstance(reference, PathRef) or Path(reference.path).is_absolute():
            continue
        target = resolve_location(reference, path.parent)
        node = data
        try:
            for part in loc[:-1]:
                node = node[part]
            if isinstance(target, Path) and target.exists() and node[loc[-1]] == reference.path:
                node[loc[-1]] = str(target.resolve())
        except (KeyError, IndexError, TypeError):
            continue
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _check(request: Request, text: str, path: Path) -> list[dict]:
    """The CLI's own `validate`: load_recipe on the text saved to a file, every problem with its line."""
    from openrecipe.recipe.schema import load_recipe

    path.write_text(text, encoding="utf-8")
    try:
        load_recipe(path)
    except MultipleErrors as errors:
        return [{"message": _shown(request, e.format(), path)} for e in errors.errors]
    except OpenRecipeError as error:
        return [{"message": _shown(request, error.format(), path)}]
    return []


def _shown(request: Request, message: str, path: Path) -> str:
    return public_message(request, message.replace(str(path), "recipe.yaml"))


@router.post("/api/recipe/validate")
async def validate(request: Request):
    body = await request.json()
    draft = request.app.state.settings.recipes_dir / ".draft.yaml"
    problems = await asyncio.to_thread(_check, request, str(body.get("yaml", "")), draft)
    return {"ok": not problems, "problems": problems}


@router.post("/api/recipe/save")
async def save(request: Request):
    settings = request.app.state.settings
    body = await request.json()
    text = str(body.get("yaml", ""))
    try:
        name = str((yaml.safe_load(text) or {}).get("name", ""))
    except (yaml.YAMLError, AttributeError):
        name = ""
    if not _NAME.match(name):
        raise OpenRecipeError("the recipe needs a `name` (letters, digits, - _ .)", fix="fill in the name field")
    path = settings.recipes_dir / f"{name}.yaml"
    problems = await asyncio.to_thread(_check, request, text, path)
    if problems:
        return {"ok": False, "problems": problems, "saved": path.name}
    result = {"ok": True, "problems": [], "saved": path.name}
    if body.get("launch"):
        run_dir = settings.runs_dir / name
        suffix = 2
        while run_dir.exists() and any(j["run_dir"] == str(run_dir.resolve()) for j in request.app.state.store.jobs()):
            run_dir = settings.runs_dir / f"{name}-{suffix}"
            suffix += 1
        result["job"] = jobs.launch(request.app.state.store, path, run_dir, run_dir.name)
    return result


@router.get("/runs")
async def runs_page(request: Request):
    return request.app.state.render(request, "runs.html", jobs=_job_rows(request))


def _job_rows(request: Request) -> list[dict]:
    import time

    rows = request.app.state.store.jobs()
    for row in rows:
        row["started"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["created"]))
    return rows


@router.get("/api/jobs")
async def job_list(request: Request):
    return {"jobs": [{k: r[k] for k in ("id", "name", "state", "started")} for r in _job_rows(request)]}


@router.get("/runs/{job_id}")
async def run_page(request: Request, job_id: int):
    job = request.app.state.store.job(job_id)
    if job is None:
        raise HTTPException(404)
    return request.app.state.render(request, "run.html", job=job)


@router.get("/api/jobs/{job_id}/events")
async def events(request: Request, job_id: int, after: int = 0):
    """Server-sent events from the job's event table; `Last-Event-ID` (or ?after=) resumes without gaps."""
    store = request.app.state.store
    if store.job(job_id) is None:
        raise HTTPException(404)
    header = request.headers.get("last-event-id", "")
    last = int(header) if header.isdigit() else after
    watcher = request.app.state.watcher

    async def stream():
        nonlocal last
        yield "retry: 1000\n\n"
        while True:
            batch = await asyncio.to_thread(store.events_after, job_id, last)
            for event in batch:
                last = event["id"]
                yield f"id: {event['id']}\nevent: {event['kind']}\ndata: {event['data']}\n\n"
            if len(batch):
                continue
            job = await asyncio.to_thread(store.job, job_id)
            if job["state"] != "running":
                yield f"event: end\ndata: {json.dumps({'state': job['state']})}\n\n"
                return
            if await request.is_disconnected():
                return
            try:
                await asyncio.wait_for(watcher.changed.wait(), timeout=5)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.post("/api/jobs/{job_id}/stop")
async def stop(request: Request, job_id: int):
    jobs.stop(request.app.state.store, job_id)
    return {"ok": True}


@router.post("/api/jobs/{job_id}/resume")
async def resume(request: Request, job_id: int):
    if request.app.state.store.job(job_id) is None:
        raise HTTPException(404)
    return {"pid": jobs.resume(request.app.state.store, job_id)}
