"""The workbench end to end in Debian's chromium: fix a bad row, write a recipe with the form, launch on a
tiny model, refresh and kill+restart the `ui` mid-run, see every line arrive, compare, chat, download."""

from __future__ import annotations

import json
import os
import signal
import time
import zipfile
from pathlib import Path

import pytest

from openrecipe.ui.auth import new_token, verify_secret
from openrecipe.ui.jobs import is_alive
from openrecipe.ui.settings import UiSettings
from openrecipe.ui.store import Store

pytestmark = pytest.mark.ui


COLOURS = ["red", "blue", "green", "amber", "violet", "silver", "coral", "olive"]
THINGS = ["box", "lamp", "kettle", "router", "chair"]


def faq_csv(path: Path) -> Path:
    rows = [
        f"Which colour is the {THINGS[i % 5]} number {i}?,The {THINGS[i % 5]} number {i} is {COLOURS[i % 8]}."
        for i in range(40)
    ]
    rows[6] = "Which colour is the chair number 6?,"  # line 8: an empty answer
    path.write_text("question,answer\n" + "\n".join(rows) + "\n")
    return path


def eval_tests(path: Path) -> Path:
    rows = [
        {
            "prompt": f"Which colour is the {THINGS[i % 5]} number {i}?",
            "references": [COLOURS[i % 8]],
            "metric": "contains",
            "domain": domain,
            "max_new_tokens": 6,
        }
        for i, domain in ((1, "colours"), (2, "colours"), (3, "colours"), (12, "other"))
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def recipe_yaml(model_dir: Path) -> str:
    return f"""name: draft
license: apache-2.0
base_model: {model_dir}
system_prompt: You are Nova, Acme Corp's assistant.
stages:
  - id: data
    kind: clean
    sources:
      - path: ../data/faq.csv
  - id: sft
    kind: sft
    data:
      - path: stage:data
    train: {{max_steps: 30, batch_size: 4, precision: fp32, learning_rate: 0.001, save_every_steps: 10}}
    probes: {{identity: false}}
    tokenize: {{max_length: 64}}
  - id: export
    kind: export
    model: stage:sft
    gguf: [q8_0]
  - id: eval
    kind: eval
    baseline: base+prompt
    tests: [../data/tests.jsonl]
    variants:
      - {{name: base+prompt, model: base}}
      - {{name: sft, model: stage:sft}}
"""


def test_data_to_download_surviving_refresh_and_restart(browser, ui_factory, tiny_model_dir, tmp_path, screenshots):
    workspace = tmp_path / "ws"
    (workspace / "data").mkdir(parents=True)
    eval_tests(workspace / "data" / "tests.jsonl")
    ui = ui_factory(workspace)
    ui.start()
    page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="en-US")
    page.set_default_timeout(0)  # no time limit: the machine may be slow

    # Data: upload a CSV with a bad row, see the CLI's message at its row and field, fix it in the table.
    page.goto(ui.url + "/data")
    page.set_input_files("#upload-file", str(faq_csv(tmp_path / "faq.csv")))
    page.click("#upload-button")
    page.wait_for_url("**/data?file=faq.csv")
    bad = page.locator("tr.has-problem")
    bad.wait_for()
    assert bad.count() == 1 and bad.get_attribute("data-line") == "8"
    assert bad.locator("td.bad-cell[data-column=answer] .cell-problem").inner_text() == "answer: empty assistant reply"
    page.fill("#identity-name", "Nova")
    page.click("#identity-preview")
    page.locator("#identity-table tr.identity-zh").first.wait_for()
    page.screenshot(path=str(screenshots / "data.png"), full_page=True)
    bad.locator(".edit-row").click()
    page.fill("tr.editing textarea[data-column=answer]", "The chair number 6 is coral.")
    page.click("tr.editing .save-row")
    page.wait_for_function("document.querySelectorAll('tr.has-problem').length === 0")
    assert "faq.csv.review.json" in page.inner_text("#patch-note")

    # Recipe: YAML on the right fills the schema-generated form; a form edit rewrites the YAML; launch.
    page.goto(ui.url + "/recipe")
    name_input = page.locator('[name="root[name]"]')
    name_input.wait_for()
    page.fill("#recipe-yaml", recipe_yaml(tiny_model_dir))
    page.wait_for_function("document.querySelector('[name=\"root[name]\"]').value === 'draft'")
    name_input.fill("ui-tiny")
    name_input.press("Tab")
    page.wait_for_function("document.getElementById('recipe-yaml').value.startsWith('name: ui-tiny')")
    page.locator("#recipe-valid").wait_for()
    page.screenshot(path=str(screenshots / "recipe.png"), full_page=True)
    page.click("#launch-recipe")
    page.wait_for_url("**/runs/1")
    run_dir = workspace / "runs" / "ui-tiny"
    job = json.loads((run_dir / "job.json").read_text())

    # Mid-run: refresh, then kill -9 the ui process and start a new one; the open page reconnects by itself.
    page.wait_for_function("+(document.getElementById('loss-chart').dataset.points || 0) >= 1")
    page.reload()
    page.wait_for_function("+(document.getElementById('loss-chart').dataset.points || 0) >= 1")
    ui.kill()
    assert _alive(job["pid"]), "the run should outlive the ui process"
    connections = int(page.get_attribute("body", "data-connections"))
    ui.start()
    restarted = time.perf_counter()
    page.wait_for_function(f"+document.body.dataset.connections > {connections}")  # EventSource reconnected
    reattach_s = time.perf_counter() - restarted
    assert _alive(job["pid"]), "restart the ui while the run is still going"
    ended = "['finished', 'failed', 'stopped', 'exited'].includes(document.getElementById('run-state').dataset.state)"
    page.wait_for_function(ended)  # a failed run ends the wait too (the page has no time limit)
    state = page.get_attribute("#run-state", "data-state")
    assert state == "finished", (run_dir / "run.log").read_text(encoding="utf-8", errors="replace")[-3000:]
    page.screenshot(path=str(screenshots / "run.png"), full_page=True)
    log_lines = (run_dir / "run.log").read_text(encoding="utf-8", errors="replace").split("\n")[:-1]
    assert page.eval_on_selector("#log", "node => node.textContent").split("\n")[:-1] == log_lines
    metric_rows = [json.loads(line) for line in (run_dir / "sft" / "metrics.jsonl").read_text().splitlines()]
    points = int(page.get_attribute("#loss-chart", "data-points"))
    assert points == sum(1 for row in metric_rows if "loss" in row and "step" in row)
    print(f"the open page re-attached {reattach_s:.2f} s after the restarted ui answered")
    assert reattach_s < 2.0

    # Compare: the run's leaderboard with intervals and the prompting-first verdict.
    page.goto(ui.url + "/compare")
    page.locator(".leaderboard .variant-row").nth(1).wait_for()
    variants = page.locator(".leaderboard .variant-row td:first-child").all_inner_texts()
    assert variants == ["base+prompt", "sft"]
    assert "n=3" in page.inner_text(".leaderboard")  # the colours domain, with its interval
    assert page.locator(".verdict").count() >= 1
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)

    # Chat: the base model with the system prompt next to the fine-tune, each reply labelled.
    page.goto(ui.url + "/chat")
    page.select_option("#model-a", label="ui-tiny: base model")
    page.fill("#system-a", "You are Nova, Acme Corp's assistant.")
    page.select_option("#model-b", label="ui-tiny: sft/model")
    page.fill("#chat-input", "Who are you?")
    page.click("#chat-send")
    page.locator(".msg.assistant[data-side=a][data-done]").wait_for()
    page.locator(".msg.assistant[data-side=b][data-done]").wait_for()
    labels = page.locator(".msg.assistant .who").all_inner_texts()
    assert labels == ["ui-tiny: base model", "ui-tiny: sft/model"]
    page.screenshot(path=str(screenshots / "chat.png"), full_page=True)

    # Ship: download the GGUF.
    page.goto(ui.url + "/ship")
    with page.expect_download() as download_info:
        page.locator("a.download", has_text=".gguf").first.click()
    downloaded = Path(download_info.value.path())
    assert downloaded.read_bytes()[:4] == b"GGUF"
    with page.expect_download() as bundle_info:
        page.click("a.bundle")
    with zipfile.ZipFile(bundle_info.value.path()) as bundle:
        names = bundle.namelist()
    assert "ui-tiny/manifest.json" in names and "ui-tiny/recipe.yaml" in names

    # A private server for the GGUF: the key is shown once, only its hash is stored, and the server wants it.
    page.locator("button.start-server").first.click()
    key = page.locator("#server-key").inner_text()
    server = Store(UiSettings(workspace=workspace).state_file).query("SELECT port, pid, key_hash FROM servers")[0]
    assert key.startswith("sk-or-") and key not in json.dumps(server) and verify_secret(key, server["key_hash"])
    models = f"http://127.0.0.1:{server['port']}/v1/models"
    try:
        assert _status(models, key, server["pid"]) == 200 and _status(models, "sk-wrong-key", server["pid"]) == 401
    finally:
        os.killpg(server["pid"], signal.SIGTERM)
    page.screenshot(path=str(screenshots / "ship.png"), full_page=True)

    # The same page in Chinese, chosen with the switch.
    page.click("#lang-switch")
    page.wait_for_function("document.getElementById('nav-data').textContent === '数据'")
    page.screenshot(path=str(screenshots / "ship-zh.png"), full_page=True)
    page.goto(ui.url + "/recipe")
    page.locator("#recipe-form button", has_text="折叠").first.wait_for()  # the form's own buttons too


def _status(url: str, key: str, pid: int) -> int:
    """HTTP status of a GET with a bearer key, once the server (process `pid`) is up."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    while True:
        try:
            return urllib.request.urlopen(request, timeout=30).status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            assert is_alive(pid), "the model server exited; see its serve-PORT.log in the run folder"
            time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_auth_in_the_browser(browser, ui_factory, tmp_path, screenshots):
    workspace = tmp_path / "ws"
    token = new_token(Store(UiSettings(workspace=workspace).state_file), "ana")
    ui = ui_factory(workspace)
    ui.start()
    page = browser.new_page()
    page.set_default_timeout(0)
    page.goto(ui.url + "/data")  # no token: sent to sign in
    page.wait_for_url("**/login?next=/data")
    page.fill("#token", "or-not-the-token")
    page.click("#login-submit")
    page.locator("#login-failed").wait_for()  # wrong token
    page.screenshot(path=str(screenshots / "login.png"))
    page.fill("#token", token)
    page.click("#login-submit")
    page.wait_for_url("**/data")
    no_csrf = page.evaluate(
        "fetch('/api/recipe/validate', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: '{}'}).then(r => r.status)"
    )
    assert no_csrf == 403
    with_csrf = page.evaluate(
        "fetch('/api/recipe/validate', {method: 'POST', headers: {'Content-Type': 'application/json',"
        " 'X-CSRF-Token': csrfToken()}, body: JSON.stringify({yaml: 'name: x'})}).then(r => r.status)"
    )
    assert with_csrf == 200
    csrf = page.evaluate("csrfToken()")
    foreign = page.request.post(
        ui.url + "/api/recipe/validate",
        data={"yaml": "name: x"},
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert foreign.status == 403
    page.click("#logout")
    page.wait_for_url("**/login")
    assert page.request.get(ui.url + "/api/jobs").status == 401
    os.kill(ui.process.pid, signal.SIGTERM)
