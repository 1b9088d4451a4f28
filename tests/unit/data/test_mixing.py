import pytest

from openrecipe.data.mixing import Mixer, mixture_counts
from openrecipe.errors import OpenRecipeError


def sources():
    return {"domain": [f"d{i}" for i in range(100)], "replay": [f"r{i}" for i in range(30)]}


def test_ratios_follow_weights_and_are_deterministic():
    mixer = Mixer(sources(), {"domain": 0.7, "replay": 0.3}, seed=3)
    drawn = mixer.take(2000)
    share = sum(1 for name, _ in drawn if name == "replay") / len(drawn)
    assert abs(share - 0.3) < 0.03
    again = Mixer(sources(), {"domain": 0.7, "replay": 0.3}, seed=3).take(2000)
    assert drawn == again
    assert Mixer(sources(), {"domain": 0.7, "replay": 0.3}, seed=4).take(50) != drawn[:50]


def test_each_source_is_walked_without_repeats_before_it_wraps():
    mixer = Mixer(sources(), {"domain": 0.5, "replay": 0.5}, seed=0)
    replay = [item for name, item in mixer.take(400) if name == "replay"]
    assert len(set(replay[:30])) == 30


def test_resume_from_state_dict_continues_the_exact_stream():
    straight = Mixer(sources(), {"domain": 0.7, "replay": 0.3}, seed=1).take(300)
    first = Mixer(sources(), {"domain": 0.7, "replay": 0.3}, seed=1)
    head = first.take(137)
    import json

    state = json.loads(json.dumps(first.state_dict()))  # plain JSON: no pickled objects
    resumed = Mixer(sources(), {"domain": 0.7, "replay": 0.3}, seed=1)
    resumed.load_state_dict(state)
    assert head + resumed.take(163) == straight
    with pytest.raises(OpenRecipeError):
        Mixer(sources(), {"domain": 0.7, "replay": 0.3}, seed=2).load_state_dict(state)


def test_plan_reports_upsampling():
    mixer = Mixer(sources(), {"domain": 0.5, "replay": 0.5}, seed=0, max_upsample=2.0)
    plan = mixer.plan(200)
    assert plan["replay"]["upsample"] == pytest.approx(100 / 30, rel=1e-3)
    assert mixer.check_upsampling(200) == ["replay"]


def test_mixture_counts_cap_upsampling():
    counts = mixture_counts({"a": 100, "b": 10}, {"a": 0.5, "b": 0.5}, max_upsample=3)
    assert counts == {"a": 55, "b": 30}


def test_bad_weights():
    with pytest.raises(OpenRecipeError, match="do not match"):
        Mixer(sources(), {"domain": 1.0})
    with pytest.raises(OpenRecipeError, match="empty"):
        Mixer({"a": []}, {"a": 1.0})
