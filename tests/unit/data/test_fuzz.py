"""Random malformed JSONL never raises anything but the project's validation error."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrecipe.data.config import DataSource
from openrecipe.data.load import load_source
from openrecipe.errors import OpenRecipeError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "instruction",
                    "output",
                    "conversations",
                    "from",
                    "value",
                    "text",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
lines = st.one_of(json_values.map(json.dumps), st.text(max_size=30), st.binary(max_size=30))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(lines, min_size=0, max_size=5),
    fmt=st.sampled_from(["auto", "messages", "alpaca", "sharegpt", "text"]),
    on_error=st.sampled_from(["strict", "skip"]),
)
def test_malformed_jsonl_only_raises_project_errors(tmp_path_factory, rows, fmt, on_error):
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else r.encode() for r in rows))
    try:
        load_source(DataSource(path=str(path), format=fmt, on_error=on_error))
    except OpenRecipeError:
        pass
