"""The vLLM engine's pure mappings (settings and requests to vLLM arguments, vLLM's outputs to our events),
run without vLLM. The engine itself is tested against a real vLLM in tests/integration/serve/test_vllm_engine.py."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.serve.config import ServeSettings
from openrecipe.serve.engines.base import Delta, Finished, GenerationRequest
from openrecipe.serve.engines.vllm_engine import (
    JsonSchemaConstraint,
    StreamState,
    adapter_rank,
    engine_arguments,
    finish_reason,
    lora_slot_rank,
    sampling_arguments,
    structured_outputs,
    token_logprobs,
)


@dataclass
class Logprob:  # the fields of vllm.logprobs.Logprob
    logprob: float
    rank: int | None
    decoded_token: str | None = None


@dataclass
class Completion:  # the fields of vllm.outputs.CompletionOutput that the engine reads
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None = None
    finish_reason: str | None = None


def request(**fields) -> GenerationRequest:
    return GenerationRequest(prompt_ids=[5, 6, 7], max_tokens=9, emit=lambda event: None, **fields)


def decode(token: int) -> str:
    return f"<{token}>"


def test_sampling_arguments_carry_every_request_field():
    args = sampling_arguments(
        request(
            temperature=0.7,
            top_p=0.9,
            seed=2**64 - 1,
            stops=["\n\n", "END"],
            presence_penalty=0.5,
            frequency_penalty=-0.25,
            logit_bias={11: 5.0, 12: -100.0},
            logprobs=3,
            prompt_logprobs=True,
        )
    )
    assert args == {
        "n": 1,
        "max_tokens": 9,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": (2**64 - 1) % 2**63,
        "stop": ["\n\n", "END"],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "logit_bias": {11: 5.0, 12: -100.0},
        "logprobs": 3,
        "prompt_logprobs": 3,
        "skip_special_tokens": True,
    }


def test_sampling_arguments_leave_unset_fields_to_vllm():
    args = sampling_arguments(request())
    assert args["seed"] is None and args["stop"] is None and args["logit_bias"] is None
    assert args["logprobs"] is None and args["prompt_logprobs"] is None and args["temperature"] == 0.0
    # echo + logprobs with no top alternatives still scores the prompt (k = 0)
    assert sampling_arguments(request(logprobs=0, prompt_logprobs=True))["prompt_logprobs"] == 0


def test_seeds_stay_distinct_and_in_torch_range():
    seeds = {sampling_arguments(request(seed=s))["seed"] for s in (0, 1, 2**40, 2**63 - 1)}
    assert len(seeds) == 4 and all(0 <= s < 2**63 for s in seeds)


def test_engine_arguments_pass_every_serve_flag():
    args = engine_arguments(
        "/models/m",
        dtype="bfloat16",
        trust_remote_code=True,
        context_length=2048,
        max_batch_size=16,
        tensor_parallel_size=2,
        gpu_memory_utilization=0.5,
        lora_ranks=[4, 16],
        max_loras=2,
    )
    assert args == {
        "model": "/models/m",
        "tokenizer": "/models/m",
        "dtype": "bfloat16",
        "trust_remote_code": True,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.5,
        "disable_log_stats": True,
        "max_model_len": 2048,
        "max_num_seqs": 16,
        "enable_lora": True,
        "max_loras": 4,  # room for adapters loaded at run time
        "max_lora_rank": 16,
    }
    assert engine_arguments("/m", lora_ranks=[8] * 6, max_loras=6)["max_loras"] == 6
    plain = engine_arguments("/models/m")
    assert "max_model_len" not in plain and "enable_lora" not in plain  # vLLM's own defaults: the model's length


def test_unknown_dtype_is_refused_before_vllm_starts():
    with pytest.raises(OpenRecipeError, match="bf16") as raised:
        engine_arguments("/models/m", dtype="bf16")
    assert "bfloat16" in raised.value.fix


@pytest.mark.parametrize(("ranks", "slot"), [([1], 8), ([8], 8), ([9, 2], 16), ([300], 320), ([], 8)])
def test_lora_slot_rank_is_the_smallest_vllm_rank_that_fits(ranks, slot):
    assert lora_slot_rank(ranks) == slot


def test_lora_rank_beyond_vllm_is_refused_with_a_fix():
    with pytest.raises(OpenRecipeError, match="rank 1024") as raised:
        lora_slot_rank([1024])
    assert "merge" in raised.value.fix


def test_adapter_rank_reads_the_peft_config(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 12, "peft_type": "LORA"}))
    assert adapter_rank(str(tmp_path)) == 12
    with pytest.raises(OpenRecipeError, match="adapter_config.json"):
        adapter_rank(str(tmp_path / "missing"))


def test_structured_outputs_ask_vllm_for_compact_json_under_the_schema():
    @dataclass
    class StructuredOutputsParams:  # the two fields of vllm.sampling_params.StructuredOutputsParams we set
        json: str
        disable_any_whitespace: bool

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    params = structured_outputs(JsonSchemaConstraint(json.dumps(schema)), StructuredOutputsParams)
    assert json.loads(params.json) == schema and params.disable_any_whitespace
    assert structured_outputs(None, StructuredOutputsParams) is None


def test_finish_reasons():
    assert [finish_reason(r) for r in ("stop", "length", "abort", None)] == ["stop", "length", "cancelled", "stop"]


def test_token_logprobs_rank_alternatives_and_keep_a_chosen_token_outside_them():
    entries = [
        {4: Logprob(-0.1, 1), 9: Logprob(-2.5, 2), 3: Logprob(-3.0, 3)},
        {8: Logprob(-4.0, 7), 1: Logprob(-0.2, 1), 2: Logprob(-1.9, 2)},  # sampled token ranked 7th
    ]
    first, second = token_logprobs([4, 8], entries, 2, decode)
    assert (first.token, first.logprob, first.top) == ("<4>", -0.1, [("<4>", -0.1), ("<9>", -2.5)])
    assert (second.token, second.logprob, second.top) == ("<8>", -4.0, [("<1>", -0.2), ("<2>", -1.9)])
    (only,) = token_logprobs([4], entries[:1], 0, decode)
    assert only.top == []


def test_prompt_logprobs_score_the_first_token_none():
    scored = token_logprobs([5, 6], [None, {6: Logprob(-1.5, 1)}], 0, decode)
    assert scored[0].token == "<5>" and scored[0].logprob is None
    assert math.isclose(scored[1].logprob, -1.5)


def test_stream_state_turns_delta_outputs_into_events():
    state = StreamState(request(logprobs=1), decode)
    assert state.events(Completion("He", [10], [{10: Logprob(-0.5, 1)}])) == [
        Delta("He", token_logprobs([10], [{10: Logprob(-0.5, 1)}], 1, decode))
    ]
    # a token whose text vLLM holds back (a partial stop string or UTF-8 character) still carries its logprob
    held = state.events(Completion("", [11], [{11: Logprob(-0.7, 1)}]))
    assert len(held) == 1 and held[0].text == "" and held[0].logprobs[0].token == "<11>"
    end = state.events(Completion("llo", [12], [{12: Logprob(-0.1, 1)}], finish_reason="length"))
    assert end[0].text == "llo" and end[1] == Finished("length", 3, 3, None)


def test_stream_state_without_logprobs_skips_empty_deltas_and_reports_cancel():
    state = StreamState(request(), decode)
    assert state.events(Completion("", [10])) == []
    assert state.events(Completion("x", [11])) == [Delta("x", None)]
    assert state.cancelled() == Finished("cancelled", 3, 2, None)
    assert state.events(Completion("", [], finish_reason="abort")) == [Finished("cancelled", 3, 2, None)]


def test_stream_state_keeps_prompt_scores_for_echo():
    state = StreamState(request(logprobs=0, prompt_logprobs=True), decode)
    state.prompt([None, {6: Logprob(-1.0, 1)}, {7: Logprob(-2.0, 4)}])
    state.prompt(None)  # later outputs carry none: the first ones stay
    (finished,) = state.events(Completion("", [], finish_reason="stop"))
    assert [s.logprob for s in finished.prompt_logprobs] == [None, -1.0, -2.0]
    assert StreamState(request(logprobs=0), decode).prompt_scores is None


def test_settings_accept_adapters_and_gpu_flags_for_vllm():
    settings = ServeSettings(
        model="m", engine="vllm", adapters={"nova": "a"}, tensor_parallel_size=2, gpu_memory_utilization=0.6
    )
    assert settings.adapters == {"nova": "a"} and settings.tensor_parallel_size == 2
    with pytest.raises(ValueError, match="transformers or vllm"):
        ServeSettings(model="m.gguf", engine="llamacpp", adapters={"nova": "a"})
    with pytest.raises(ValueError):
        ServeSettings(model="m", engine="vllm", gpu_memory_utilization=1.5)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_engine_says_how_to_get_it():
    from openrecipe.serve.engines import ENGINES

    with pytest.raises(OpenRecipeError, match="needs vLLM") as raised:
        ENGINES.get("vllm")("default", model_id="m")
    assert "pip install" in raised.value.fix
