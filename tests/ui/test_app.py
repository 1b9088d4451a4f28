"""The workbench's server without a browser: data review, recipe validation, the job event log, security."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openrecipe.ui.app import create_app
from openrecipe.ui.auth import new_token
from openrecipe.ui.i18n import MESSAGES, pick_language
from openrecipe.ui.jobs import poll_job
from openrecipe.ui.settings import UiSettings
from openrecipe.ui.store import Store
from openrecipe.utils.hashing import sha256_file

BAD_CSV = "question,answer\nWhat are your hours?,9 to 5.\nHow do I reset my password?,\nWhere are you?,Berlin\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"


def client_for(workspace: Path, **kwargs) -> TestClient:
    return TestClient(create_app(UiSettings(workspace=workspace)), **kwargs)


def csrf_of(client: TestClient) -> str:
    page = client.get("/data")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def test_bad_row_shows_the_cli_message_at_its_row_and_field_and_an_edit_fixes_it(workspace):
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        uploaded = client.post("/api/data/upload?name=faq.csv", content=BAD_CSV, headers={"X-CSRF-Token": csrf})
        assert uploaded.json() == {"file": "faq.csv"}
        page = client.get("/api/data/page", params={"file": "faq.csv"}).json()
        bad = [row for row in page["rows"] if row["problems"]]
        assert [(r["line"], r["problems"][0]["field"]) for r in bad] == [(3, "answer")]
        assert bad[0]["problems"][0]["message"] == "answer: empty assistant reply"  # the reader's own DataError
        fixed = client.post(
            "/api/data/edit",
            json={"file": "faq.csv", "row": bad[0]["row"], "values": {"answer": "Use the reset link."}},
            headers={"X-CSRF-Token": csrf},
        )
        assert fixed.json() == {"problems": []}
        patch = json.loads((workspace / "data" / "faq.csv.review.json").read_text())
        assert patch["rows"]["1"] == {"line": 3, "was": {"answer": ""}, "set": {"answer": "Use the reset link."}}
        assert patch["file"] == "faq.csv" and patch["sha256"] == sha256_file(workspace / "data" / "faq.csv")
        assert (workspace / "data" / "faq.csv").read_text() == BAD_CSV  # the original is never rewritten
        broken = client.post(
            "/api/data/edit",
            json={"file": "faq.csv", "row": 0, "values": {"question": " "}},
            headers={"X-CSRF-Token": csrf},
        )
        assert broken.json()["problems"][0]["message"] == "question: empty question"


def test_search_sort_page_and_flags(workspace):
    rows = "".join(f"Question {i:03d}?,Answer {i}\n" for i in range(120))
    (workspace / "data").mkdir(parents=True)
    (workspace / "data" / "qa.csv").write_text("question,answer\n" + rows)
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        first = client.get("/api/data/page", params={"file": "qa.csv", "size": 50}).json()
        assert (first["total"], first["pages"], first["rows"][0]["line"]) == (120, 3, 2)
        last = client.get("/api/data/page", params={"file": "qa.csv", "sort": "question", "desc": True}).json()
        assert last["rows"][0]["values"]["question"] == "Question 119?"
        found = client.get("/api/data/page", params={"file": "qa.csv", "q": "question 07"}).json()
        assert sorted(r["values"]["question"] for r in found["rows"]) == [f"Question 07{i}?" for i in range(10)]
        flag = {"file": "qa.csv", "row": 5, "flagged": True}
        client.post("/api/data/flag", json=flag, headers={"X-CSRF-Token": csrf})
        flagged = client.get("/api/data/page", params={"file": "qa.csv", "only": "flagged"}).json()
        assert [r["row"] for r in flagged["rows"]] == [5]
        patch = json.loads((workspace / "data" / "qa.csv.review.json").read_text())
        assert patch["rows"] == {"5": {"line": 7, "flag": True}}


def test_cleaner_proposals_are_decided_into_the_patch(workspace):
    (workspace / "data").mkdir(parents=True)
    text = (
        "question,answer\nMail?,Write to bob@example.com today\n"
        "Hours?,Nine to five every day\nHours??,Nine to five every day\n"
    )
    (workspace / "data" / "faq.csv").write_text(text)
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        found = client.post("/api/data/proposals", json={"file": "faq.csv"}, headers={"X-CSRF-Token": csrf}).json()
        kinds = {p["kind"]: p for p in found["proposals"]}
        assert kinds["pii"]["new"] == "Write to <EMAIL> today" and kinds["near_duplicate"]["line"] == 4
        for proposal in found["proposals"]:
            decision = "accepted" if proposal["kind"] == "pii" else "rejected"
            body = {"file": "faq.csv", "proposal": proposal, "decision": decision}
            assert client.post("/api/data/decide", json=body, headers={"X-CSRF-Token": csrf}).status_code == 200
        patch = json.loads((workspace / "data" / "faq.csv.review.json").read_text())
        assert {p["decision"] for p in patch["proposals"].values()} == {"accepted", "rejected"}
        assert patch["proposals"]["pii:0:answer"]["new"] == "Write to <EMAIL> today"


def test_identity_preview_in_english_and_chinese(workspace):
    with client_for(workspace) as client:
        items = client.get("/api/identity", params={"name": "Nova", "organization": "Acme"}).json()["items"]
        assert {i["language"] for i in items} == {"en", "zh"}
        assert any("我是Nova" in i["answer"] for i in items)


def test_recipe_validation_uses_the_cli_messages_and_the_schema_is_served(workspace):
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        schema = client.get("/api/recipe/schema").json()
        assert "stages" in schema["properties"]
        text = "name: x\nstages:\n  - id: a\n    kind: sft\n    bogus: 1\n"
        result = client.post("/api/recipe/validate", json={"yaml": text}, headers={"X-CSRF-Token": csrf}).json()
        assert not result["ok"]
        assert any(p["message"].startswith("recipe.yaml:5: unknown key 'stages[a].bogus'") for p in result["problems"])


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_event_log_resumes_from_stored_offsets_after_a_restart(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "sft").mkdir(parents=True)
    (run_dir / "run.log").write_text("line 1\nline 2\nhalf")
    (run_dir / "sft" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    store = Store(tmp_path / "state.sqlite3")
    job_id = store.add_job("run", str(run_dir), "r.yaml", ["run"], pid=_dead_pid())
    poll_job(store, store.job(job_id))
    kinds = [(e["kind"], json.loads(e["data"])) for e in store.events_after(job_id, 0)]
    assert [d["line"] for k, d in kinds if k == "log"] == ["line 1", "line 2"]  # the half line waits
    last = store.events_after(job_id, 0)[-1]["id"]
    store.close()
    with open(run_dir / "run.log", "a") as handle:
        handle.write(" done\n")
    restarted = Store(tmp_path / "state.sqlite3")  # a new `ui` process on the same state file
    poll_job(restarted, restarted.job(job_id))
    new = [(e["kind"], json.loads(e["data"])) for e in restarted.events_after(job_id, last)]
    assert new == [("log", {"line": "half done"})]
    poll_job(restarted, restarted.job(job_id))  # nothing new and the process is gone: the job ends
    assert restarted.job(job_id)["state"] == "exited"


def test_sse_replays_after_last_event_id(workspace, tmp_path):
    with client_for(workspace) as client:
        store = client.app.state.store
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "run.log").write_text("".join(f"line {i}\n" for i in range(5)))
        job_id = store.add_job("run", str(run_dir), "r.yaml", ["run"], pid=_dead_pid())
        while store.job(job_id)["state"] == "running":
            time.sleep(0.05)
        body = client.get(f"/api/jobs/{job_id}/events").text
        ids = [int(i) for i in re.findall(r"^id: (\d+)$", body, re.M)]
        assert body.count("event: log") == 5 and body.rstrip().endswith('data: {"state": "exited"}')
        replay = client.get(f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": str(ids[2])}).text
        assert [int(i) for i in re.findall(r"^id: (\d+)$", replay, re.M)] == ids[3:]


def test_auth_tokens_csrf_origin_and_no_paths_for_remote_users(workspace):
    token = new_token(Store(UiSettings(workspace=workspace).state_file), "ana")
    remote = client_for(workspace, client=("203.0.113.5", 5000))
    with remote as client:
        assert client.get("/api/jobs").status_code == 401
        assert client.get("/data", follow_redirects=False).headers["location"] == "/login?next=/data"
        login = client.get("/login")
        form_token = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        wrong = client.post("/login", data={"csrf": form_token, "token": "or-wrong"}, follow_redirects=False)
        assert wrong.headers["location"] == "/login?failed=1"
        no_csrf = client.post("/login", data={"token": token}, follow_redirects=False)
        assert no_csrf.status_code == 403
        good = client.post("/login", data={"csrf": form_token, "token": token}, follow_redirects=False)
        assert good.status_code == 303 and "openrecipe_session" in good.cookies
        assert client.get("/api/jobs").status_code == 200
        csrf = csrf_of(client)
        assert client.post("/api/recipe/validate", json={"yaml": "name: x"}).status_code == 403
        foreign = client.post(
            "/api/recipe/validate",
            json={"yaml": "name: x"},
            headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        result = client.post(
            "/api/recipe/validate",
            json={"yaml": "name: x\nbase_model: /srv/secret/models/m"},
            headers={"X-CSRF-Token": csrf},
        )
        assert result.status_code == 200 and str(workspace) not in result.text
        opened = client.post("/api/data/open", json={"path": "/etc/passwd"}, headers={"X-CSRF-Token": csrf})
        assert opened.status_code == 403


def test_sessions_expire(workspace):
    token = new_token(Store(UiSettings(workspace=workspace).state_file), "ana")
    with client_for(workspace) as client:
        login = client.get("/login")
        form_token = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        client.post("/login", data={"csrf": form_token, "token": token}, follow_redirects=False)
        assert client.get("/api/jobs").status_code == 200
        with client.app.state.store.transaction() as db:
            db.execute("UPDATE sessions SET expires = ?", (time.time() - 1,))
        assert client.get("/api/jobs").status_code == 401


def test_non_loopback_host_needs_credentials(tmp_path):
    from typer.testing import CliRunner

    from openrecipe.cli.main import app

    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--workspace", str(tmp_path)])
    assert result.exit_code == 2 and "refusing to listen on 0.0.0.0 without sign-in" in result.output


def test_every_message_exists_in_english_and_chinese():
    assert MESSAGES["en"].keys() == MESSAGES["zh"].keys()
    assert pick_language(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert pick_language("en", "zh-CN") == "en"
    templates = Path(__file__).resolve().parents[2] / "src/openrecipe/ui"
    used = set()
    for path in list(templates.glob("templates/*.html")) + list(templates.glob("static/*.js")):
        used |= set(re.findall(r"""\bt\(['"]([a-z_]+\.[a-z_]+)['"]\)""", path.read_text()))
    assert used and used <= MESSAGES["en"].keys(), used - MESSAGES["en"].keys()


def test_vendored_assets_match_their_manifest():
    import hashlib

    vendor = Path(__file__).resolve().parents[2] / "src/openrecipe/ui/static/vendor"
    manifest = json.loads((vendor / "manifest.json").read_text())
    for name, entry in manifest.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == entry["sha256"], name
    for template in (vendor.parent.parent / "templates").glob("*.html"):
        assert not re.search(r"""(src|href)=["']https?://""", template.read_text()), template.name


def _write(kind: str, path: Path) -> Path:
    good = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    bad = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": " "}]
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"messages": [good, bad, good]}), path)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in (good, bad, good)))
    else:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        for row in (("question", "answer"), ("Hi?", "Hello."), ("Hi?", None), ("Bye?", "Bye.")):
            sheet.append(row)
        book.save(path)
    return path


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "xlsx"])
def test_every_upload_format_shows_its_bad_row(workspace, tmp_path, kind):
    source = _write(kind, tmp_path / f"rows.{kind}")
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        client.post(f"/api/data/upload?name=rows.{kind}", content=source.read_bytes(), headers={"X-CSRF-Token": csrf})
        page = client.get("/api/data/page", params={"file": f"rows.{kind}"}).json()
        assert page["num_rows"] == 3
        problems = [(r["row"], p["field"], p["message"]) for r in page["rows"] for p in r["problems"]]
        field = "answer" if kind == "xlsx" else "messages"
        reason = "answer: empty assistant reply" if kind == "xlsx" else "messages[1].content: empty assistant reply"
        assert problems == [(1, field, reason)]


def test_stop_and_resume_buttons_signal_and_rerun_the_detached_job(workspace, tmp_path):
    """Stop is `openrecipe stop` (SIGTERM); resume starts the job's same command again, detached."""
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        store = client.app.state.store
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        job_id = store.add_job("run", str(run_dir), "r.yaml", ["version-check", "--help"], pid=sleeper.pid)
        assert client.post(f"/api/jobs/{job_id}/stop", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert sleeper.wait() == -15
        while store.job(job_id)["state"] == "running":
            time.sleep(0.1)
        assert store.job(job_id)["state"] == "exited"
        resumed = client.post(f"/api/jobs/{job_id}/resume", headers={"X-CSRF-Token": csrf}).json()
        assert resumed["pid"] != sleeper.pid and store.job(job_id)["pid"] == resumed["pid"]
        while store.job(job_id)["state"] == "running":
            time.sleep(0.1)
        logged = [json.loads(e["data"]) for e in store.events_after(job_id, 0) if e["kind"] == "log"]
        assert any("No such command 'version-check'" in e["line"] for e in logged)  # the same argv ran again


def test_a_shipped_recipe_as_template_still_validates_from_the_workspace(workspace):
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        assert "acme-identity" in client.get("/recipe").text
        text = client.get("/api/recipe/template", params={"name": "acme-identity"}).json()["yaml"]
        assert str(Path(__file__).resolve().parents[2] / "data" / "acme" / "faq.csv") in text
        result = client.post("/api/recipe/validate", json={"yaml": text}, headers={"X-CSRF-Token": csrf}).json()
        assert result == {"ok": True, "problems": []}


def test_a_file_opened_in_place_keeps_its_patch_beside_it_and_stays_listed(workspace, tmp_path):
    outside = tmp_path / "elsewhere" / "faq.csv"
    outside.parent.mkdir()
    outside.write_text(BAD_CSV)
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        opened = client.post("/api/data/open", json={"path": str(outside)}, headers={"X-CSRF-Token": csrf}).json()
        body = {"file": opened["file"], "row": 1, "values": {"answer": "Use the link."}}
        assert client.post("/api/data/edit", json=body, headers={"X-CSRF-Token": csrf}).json() == {"problems": []}
    assert (outside.parent / "faq.csv.review.json").is_file()
    with client_for(workspace) as client:  # a restarted ui still lists it
        assert str(outside) in client.get("/data").text
    # The file changes under its patch: opening it sets the patch aside (the clean stage would refuse it).
    outside.write_text(BAD_CSV + "Refunds?,Within 30 days\n")
    with client_for(workspace) as client:
        page = client.get("/api/data/page", params={"file": opened["file"]}).json()
        assert page["patch"] is None and page["patch_set_aside"].startswith("faq.csv.")
        assert (outside.parent / page["patch_set_aside"]).is_file()
        assert not (outside.parent / "faq.csv.review.json").exists()
        assert [row["line"] for row in page["rows"] if row["problems"]] == [3]  # the old edit no longer applies


def test_language_switch_returns_only_to_pages_of_this_site(workspace):
    with client_for(workspace) as client:
        away = client.get("/lang/zh", headers={"referer": "http://evil.example/x"}, follow_redirects=False)
        back = client.get("/lang/zh", headers={"referer": "http://testserver/runs?x=1"}, follow_redirects=False)
        assert (away.headers["location"], back.headers["location"]) == ("/data", "/runs?x=1")
        assert "数据" in client.get("/data").text


def test_chat_offers_models_by_opaque_key_and_refuses_anything_else(workspace):
    with client_for(workspace) as client:
        csrf = csrf_of(client)
        page = client.get("/chat").text
        keys = re.findall(r'<option value="([0-9a-f]{16})"', page)
        assert keys and "/" not in "".join(re.findall(r'<option value="([^"]*)"', page))
        refused = client.post(
            "/api/chat",
            json={"model": "/etc/passwd", "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-CSRF-Token": csrf},
        )
        assert refused.status_code == 400 and "choose a model from the list" in refused.json()["error"]


def test_runs_detached_from_the_cli_into_the_workspace_are_adopted(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path / "home"))
    from openrecipe.recipe.jobs import start_detached

    inside, outside = workspace / "runs" / "cli-run", tmp_path / "elsewhere"
    start_detached(["--version"], inside)
    start_detached(["--version"], outside)
    with client_for(workspace) as client:
        jobs = client.get("/api/jobs").json()["jobs"]
        assert [job["name"] for job in jobs] == ["cli-run"]
        while client.app.state.store.job(jobs[0]["id"])["state"] == "running":
            time.sleep(0.1)
        events = client.app.state.store.events_after(jobs[0]["id"], 0)
        assert any(e["kind"] == "log" and "openrecipe" in json.loads(e["data"])["line"] for e in events)
