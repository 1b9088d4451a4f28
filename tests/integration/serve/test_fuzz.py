"""Malformed bodies never produce a 5xx, and the server keeps answering afterwards."""

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.serve.conftest import API_KEY

values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"model": st.sampled_from(["tiny", "x"]), "messages": values},
        optional={
            "max_tokens": values,
            "temperature": values,
            "stream": values,
            "stop": values,
            "top_p": values,
            "n": values,
            "seed": values,
        },
    ),
    st.fixed_dictionaries(
        {"model": st.just("tiny"), "prompt": values},
        optional={"max_tokens": st.integers(-2, 3), "echo": values},
    ),
    values,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]), raw=st.booleans())
def test_malformed_bodies_never_5xx(server, body, path, raw):
    base, _ = server
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    if isinstance(body, dict) and isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 3:
        body["max_tokens"] = 3
    content = json.dumps(body, allow_nan=True).encode() if not raw else json.dumps(body)[:-1].encode() + b"\xff"
    response = httpx.post(f"{base}{path}", headers=headers, content=content, timeout=60)
    assert response.status_code < 500, response.text
    assert "error" in response.json() or response.status_code == 200


def test_still_alive_after_fuzzing(server):
    base, _ = server
    assert httpx.get(f"{base}/health").status_code == 200
