"""The vLLM engine through the official openai client: the conformance suite of the transformers engine run
again against a vLLM server (this module's `server` and `client` fixtures), plus streaming cancellation and
LoRA adapters. Needs vLLM and a CUDA GPU; without them every test here is skipped with the command to run it."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import httpx
import pytest

from tests.integration.serve.conftest import API_KEY, running_server

# The conformance suite, collected again here so it runs against this module's vLLM server.
from tests.integration.serve.test_api_surface import (  # noqa: F401
    test_chat_logprobs_match_the_greedy_choice,
    test_completion_echo_scores_the_prompt,
    test_content_parts_tool_turns_and_max_completion_tokens,
    test_every_openai_field_is_honoured_or_refused_by_name,
    test_models_report_context_length_and_metrics_are_prometheus,
    test_n_choices_are_distinct_and_reproducible,
    test_penalties_change_a_greedy_reply_and_logit_bias_forces_a_token,
    test_streamed_n_choices_each_finish,
)
from tests.integration.serve.test_fuzz import (  # noqa: F401
    test_malformed_bodies_never_5xx,
    test_still_alive_after_fuzzing,
)
from tests.integration.serve.test_openai_client import (  # noqa: F401
    test_authentication,
    test_body_size_content_type_and_origin,
    test_chat_completion_usage_and_length,
    test_completions_and_seeded_sampling,
    test_concurrent_requests_are_batched,
    test_errors_map_to_openai_exceptions,
    test_models_and_health,
    test_stop_sequences,
    test_streaming_ends_with_done_and_matches_non_streaming,
)
from tests.integration.serve.test_structured_output import (  # noqa: F401
    test_json_object_reply_is_an_object,
    test_json_schema_replies_always_validate,
    test_unusable_schema_is_a_400_naming_response_format,
)
from tests.integration.serve.test_tool_calling import (  # noqa: F401
    test_forced_call_streams_as_a_tool_calls_delta,
    test_forced_calls_always_parse_and_match_the_schema,
    test_tool_choice_naming_an_unknown_function_is_refused,
    test_tool_result_turn_and_none_choice_give_text,
)


def _vllm_missing() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed"
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU"


_MISSING = _vllm_missing()
RUN_ME = "pip install -e '.[vllm]' && pytest tests/integration/serve/test_vllm_engine.py"
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"{_MISSING}; on a CUDA machine run: {RUN_ME}")

PROMPT = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-layer Llama with 64-wide attention heads (the head sizes vLLM's GPU attention kernels take)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = tmp_path_factory.mktemp("vllm") / "model"
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


VLLM = {"engine": "vllm", "dtype": "float32", "gpu_memory_utilization": 0.3}


@pytest.fixture(scope="module")
def server(vllm_model_dir):
    settings = {**VLLM, "api_key": API_KEY, "max_tokens_cap": 128, "max_body_bytes": 20_000, "context_length": 512}
    with running_server(model=str(vllm_model_dir), **settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    base, _ = server
    return OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_every_vllm_argument_we_build_is_accepted_by_vllm(vllm_model_dir):
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    from openrecipe.serve.engines.base import GenerationRequest
    from openrecipe.serve.engines.vllm_engine import (
        JsonSchemaConstraint,
        engine_arguments,
        sampling_arguments,
        structured_outputs,
    )

    AsyncEngineArgs(**engine_arguments(str(vllm_model_dir), context_length=512, lora_ranks=[8], max_loras=2))
    request = GenerationRequest(
        [1, 2], 4, lambda e: None, seed=7, stops=["x"], logit_bias={3: 1.0}, logprobs=2, prompt_logprobs=True
    )
    SamplingParams(
        **sampling_arguments(request),
        output_kind=RequestOutputKind.DELTA,
        structured_outputs=structured_outputs(JsonSchemaConstraint('{"type": "object"}'), StructuredOutputsParams),
    )


def test_context_length_flag_reaches_vllm(server, client):
    _, engine = server
    assert engine.context_length == 512
    assert client.models.list().data[0].model_extra["context_length"] == 512


def _no_end(engine) -> dict[str, int]:
    """A logit_bias that keeps the random tiny model from ending its reply early."""
    return {str(token): -100 for token in engine.tokenizer.all_special_ids}


def test_streams_arrive_token_by_token(server, client):
    _, engine = server
    stream = client.chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=16, temperature=0, stream=True, logit_bias=_no_end(engine)
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1  # not one whole reply


def test_client_disconnect_aborts_the_request_in_vllm(vllm_model_dir):
    settings = {**VLLM, "max_tokens_cap": 4000, "context_length": 4096}
    with running_server(model=str(vllm_model_dir), **settings) as (base, engine):
        body = {
            "model": "tiny",
            "messages": PROMPT,
            "max_tokens": 4000,
            "temperature": 0,
            "stream": True,
            "logit_bias": _no_end(engine),
        }
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # leave after the first piece of text
        while engine.stats()["running"]:  # ends either way: aborted, or after all 4000 tokens
            threading.Event().wait(0.05)
        assert engine.stats()["generated_tokens"] < 4000


def _make_adapter(base_dir, out_dir, seed: int):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(out_dir))
    return out_dir


def _greedy(base: str, model: str) -> str:
    body = {"model": model, "messages": PROMPT, "max_tokens": 12, "temperature": 0}
    response = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_adapters_share_one_base_and_load_and_unload_at_run_time(vllm_model_dir, tmp_path):
    nova, lumen = (_make_adapter(vllm_model_dir, tmp_path / name, seed) for seed, name in enumerate(["nova", "lumen"]))
    admin = {"X-Admin-Key": "admin-key-123"}
    settings = {**VLLM, "adapters": {"nova": str(nova)}, "admin_key": "admin-key-123", "context_length": 512}
    with running_server(model=str(vllm_model_dir), **settings) as (base, engine):
        load = {"name": "lumen", "path": str(lumen)}
        assert httpx.post(f"{base}/admin/adapters", json=load, headers=admin, timeout=120).status_code == 200
        listed = httpx.get(f"{base}/v1/models").json()["data"]
        assert [(m["id"], m["parent"]) for m in listed] == [("tiny", None), ("nova", "tiny"), ("lumen", "tiny")]
        alone = {name: _greedy(base, name) for name in ("tiny", "nova", "lumen")}
        assert len(set(alone.values())) == 3  # each adapter really answers

        answers: dict[str, list[str]] = {name: [] for name in alone}
        threads = [
            threading.Thread(target=lambda n=name: answers[n].append(_greedy(base, n))) for name in list(alone) * 2
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == {name: [reply] * 2 for name, reply in alone.items()}
        assert engine.stats()["max_batch_size_seen"] > 1

        assert httpx.delete(f"{base}/admin/adapters/lumen", headers=admin).status_code == 200
        refused = httpx.post(f"{base}/v1/chat/completions", json={"model": "lumen", "messages": PROMPT})
        assert refused.status_code == 404
        assert _greedy(base, "nova") == alone["nova"]
