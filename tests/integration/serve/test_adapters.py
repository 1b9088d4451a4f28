"""Several LoRA fine-tunes on one server: one copy of the base, each request answered by its own adapter."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.integration.serve.conftest import running_server

PROMPT = [{"role": "user", "content": "Who are you?"}]


def _make_adapter(base_dir, out_dir, seed: int):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {name: _make_adapter(tiny_model_dir, root / name, seed) for seed, name in enumerate(["nova", "lumen"])}


def _greedy(base: str, model: str) -> str:
    body = {"model": model, "messages": PROMPT, "max_tokens": 12, "temperature": 0}
    response = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == model
    return response.json()["choices"][0]["message"]["content"]


def test_mixed_adapter_burst_gets_each_identity_right(tiny_model_dir, adapters):
    expected = {}
    for name, path in adapters.items():  # each adapter served alone (merged into the base) is the reference
        with running_server(model=str(path)) as (base, _):
            expected[name] = _greedy(base, "tiny")
    with running_server(model=str(tiny_model_dir)) as (base, _):
        expected["tiny"] = _greedy(base, "tiny")
    assert len(set(expected.values())) == 3  # the adapters really change the replies

    settings = {"adapters": {name: str(path) for name, path in adapters.items()}, "max_batch_size": 8}
    with running_server(model=str(tiny_model_dir), **settings) as (base, engine):
        listed = httpx.get(f"{base}/v1/models").json()["data"]
        assert [(m["id"], m["parent"]) for m in listed] == [("tiny", None), ("nova", "tiny"), ("lumen", "tiny")]
        answers: dict[str, list[str]] = {name: [] for name in expected}
        names = ["nova", "lumen", "tiny"] * 2

        def ask(name: str) -> None:
            answers[name].append(_greedy(base, name))

        threads = [threading.Thread(target=ask, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert engine.stats()["max_batch_size_seen"] > 1  # adapters shared batches
        for name, replies in answers.items():
            assert replies == [expected[name]] * 2, name
        missing = httpx.post(f"{base}/v1/chat/completions", json={"model": "nope", "messages": PROMPT})
        assert missing.status_code == 404


def test_adapters_load_and_unload_at_run_time(tiny_model_dir, adapters):
    import json

    admin = {"X-Admin-Key": "admin-key-123"}
    settings = {"adapters": {"nova": str(adapters["nova"])}, "admin_key": "admin-key-123", "decode_chunk": 1}
    with running_server(model=str(tiny_model_dir), max_tokens_cap=400, **settings) as (base, engine):
        load = {"name": "lumen", "path": str(adapters["lumen"])}
        assert (
            httpx.post(f"{base}/admin/adapters", json=load, headers={"X-Admin-Key": "wrong-key-000"}).status_code == 403
        )
        assert httpx.post(f"{base}/admin/adapters", json=load, headers=admin, timeout=60).status_code == 200
        assert httpx.post(f"{base}/admin/adapters", json=load, headers=admin, timeout=60).status_code == 409
        assert [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]] == ["tiny", "nova", "lumen"]
        lumen_reply = _greedy(base, "lumen")
        assert lumen_reply not in (_greedy(base, "nova"), _greedy(base, "tiny"))

        finish: list = []

        def long_stream() -> None:
            body = {"model": "lumen", "messages": PROMPT, "max_tokens": 120, "temperature": 0, "stream": True}
            with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        choices = json.loads(line[6:])["choices"]
                        if choices and choices[0]["finish_reason"]:
                            finish.append((response.status_code, choices[0]["finish_reason"]))

        thread = threading.Thread(target=long_stream)
        before = engine.stats()["generated_tokens"]
        thread.start()
        while engine.stats()["generated_tokens"] == before:
            thread.join(0.05)
        assert httpx.delete(f"{base}/admin/adapters/lumen", headers=admin).status_code == 200
        refused = httpx.post(f"{base}/v1/chat/completions", json={"model": "lumen", "messages": PROMPT})
        assert refused.status_code == 404
        thread.join()
        assert finish == [(200, "length")] or finish == [(200, "stop")]
        assert httpx.delete(f"{base}/admin/adapters/lumen", headers=admin).status_code == 404
        assert _greedy(base, "nova")  # the other adapter is untouched
