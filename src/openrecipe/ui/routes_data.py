"""Data pages: upload or open a file, page through its rows with the CLI's problems inline, edit, flag,
decide on the cleaner's proposals, preview the identity set."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from openrecipe.data.review import PATCH_SUFFIX
from openrecipe.errors import OpenRecipeError
from openrecipe.ui.app import is_loopback_client, public_message
from openrecipe.ui.table import SUPPORTED, DataTable

router = APIRouter()
_SAFE_NAME = re.compile(r"[^\w.\-]+", re.UNICODE)
MAX_UPLOAD_BYTES = 2 << 30


def data_files(request: Request) -> list[str]:
    folder = request.app.state.settings.data_dir
    names = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in SUPPORTED
        and not p.name.startswith(".")
        and not p.name.endswith(PATCH_SUFFIX)
    )
    return names + sorted(_opened(request))


def _opened(request: Request) -> set[str]:
    """Files on the server's disk a local user opened in place (kept across restarts of the ui)."""
    return {row["path"] for row in request.app.state.store.query("SELECT path FROM opened_files")}


def resolve_file(request: Request, name: str) -> Path:
    """A name in the workspace's data folder, or a server path this (local) user opened."""
    settings = request.app.state.settings
    if name in _opened(request):
        return Path(name)
    path = (settings.data_dir / name).resolve()
    if path.parent != settings.data_dir.resolve() or not path.is_file():
        raise HTTPException(404)
    return path


_OPENING = threading.Lock()


def get_table(request: Request, name: str) -> DataTable:
    """One parsed and validated table per file, re-read when the file changes on disk."""
    path = resolve_file(request, name)
    tables: dict[str, Any] = request.app.state.tables
    with _OPENING:  # two requests for a big file right after upload must not both parse it
        stamp = path.stat().st_mtime_ns
        cached = tables.get(str(path))
        if cached is None or cached[0] != stamp:
            cached = (stamp, DataTable.open(path))
            tables[str(path)] = cached
    return cached[1]


@router.get("/data")
async def data_page(request: Request, file: str | None = None):
    return request.app.state.render(request, "data.html", files=data_files(request), current=file)


@router.post("/api/data/upload")
async def upload(request: Request, name: str):
    clean = _SAFE_NAME.sub("_", Path(name).name).strip("._") or "data.csv"
    if Path(clean).suffix.lower() not in SUPPORTED:
        raise OpenRecipeError(f"unsupported file type {Path(clean).suffix!r}", fix="upload CSV, XLSX, JSONL or Parquet")
    target = request.app.state.settings.data_dir / clean
    size = 0
    with open(target.with_name(f".{clean}.part"), "wb") as handle:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise OpenRecipeError("file too large for upload", fix="open it from the server's disk instead")
            handle.write(chunk)
    target.with_name(f".{clean}.part").replace(target)
    return {"file": clean}


@router.post("/api/data/open")
async def open_path(request: Request):
    body = await request.json()
    if not is_loopback_client(request):
        raise HTTPException(403, "only a local user may open files from the server's disk")
    path = Path(str(body.get("path", ""))).expanduser().resolve()
    if not path.is_file() or path.suffix.lower() not in SUPPORTED:
        raise OpenRecipeError(f"{path}: not a CSV, XLSX, JSONL or Parquet file")
    with request.app.state.store.transaction() as db:
        db.execute("INSERT OR IGNORE INTO opened_files (path) VALUES (?)", (str(path),))
    return {"file": str(path)}


@router.get("/api/data/page")
async def page(
    request: Request,
    file: str,
    q: str = "",
    sort: str | None = None,
    desc: bool = False,
    only: str | None = None,
    page: int = 1,
    size: int = 50,
):
    table = await asyncio.to_thread(get_table, request, file)
    result = await asyncio.to_thread(
        table.page, query=q, sort=sort, descending=desc, only=only, page=page, size=min(max(size, 1), 500)
    )
    assert table.review is not None
    file_problems = [p.to_json() for p in table.problems.get(-1, [])]
    if table.file_problem:
        file_problems.insert(0, {"row": None, "line": None, "field": None, "message": table.file_problem})
    for problem in file_problems:
        problem["message"] = public_message(request, problem["message"])
    return {
        "file": file,
        "format": table.format,
        "columns": result.columns,
        "rows": result.rows,
        "total": result.total,
        "num_rows": table.num_rows,
        "page": result.page,
        "pages": result.pages,
        "num_problem_rows": len([r for r in table.problems if r >= 0]),
        "file_problems": file_problems,
        "patch": Path(file).name + PATCH_SUFFIX if table.review.rows or table.review.proposals else None,
        "patch_set_aside": table.review.set_aside,
    }


@router.post("/api/data/edit")
async def edit(request: Request):
    body = await request.json()

    def work():
        table = get_table(request, body["file"])
        try:
            problems = table.edit(int(body["row"]), {str(k): str(v) for k, v in body["values"].items()})
        except ValueError as error:
            raise OpenRecipeError(str(error)) from None
        return problems

    problems = await asyncio.to_thread(work)
    return {"problems": [p.to_json() for p in problems]}


@router.post("/api/data/flag")
async def flag(request: Request):
    body = await request.json()

    def work():
        table = get_table(request, body["file"])
        table.flag(int(body["row"]), bool(body["flagged"]))

    await asyncio.to_thread(work)
    return {"ok": True}


@router.post("/api/data/proposals")
async def proposals(request: Request):
    from openrecipe.ui.proposals import cleaner_proposals

    body = await request.json()
    table = get_table(request, body["file"])
    found = await asyncio.to_thread(cleaner_proposals, table)
    assert table.review is not None
    for proposal in found:
        decided = table.review.proposals.get(proposal["key"])
        proposal["decision"] = decided.get("decision") if decided else None
    return {"proposals": found}


@router.post("/api/data/decide")
async def decide(request: Request):
    body = await request.json()
    table = get_table(request, body["file"])
    assert table.review is not None
    if body["decision"] not in ("accepted", "rejected"):
        raise OpenRecipeError("decision must be 'accepted' or 'rejected'")
    proposal = {
        k: body["proposal"][k]
        for k in ("kind", "row", "line", "field", "old", "new", "detail")
        if k in body["proposal"]
    }
    await asyncio.to_thread(table.review.decide, body["proposal"]["key"], proposal, body["decision"])
    return JSONResponse({"ok": True})


@router.get("/api/identity")
async def identity(name: str, organization: str):
    from openrecipe.config.common import Identity
    from openrecipe.data.identity import identity_items

    items = identity_items(Identity(name=name, organization=organization))
    return {
        "items": [
            {"question": i.question, "answer": i.answer, "language": i.language, "held_out": i.held_out} for i in items
        ]
    }
