from openrecipe.data.mixing import mixture_counts


def test_mixture_counts_follow_weights():
    assert mixture_counts({"a": 100, "b": 100}, {"a": 0.75, "b": 0.25}) == {"a": 150, "b": 50}


def test_mixture_counts_cap_upsampling():
    counts = mixture_counts({"a": 100, "b": 10}, {"a": 0.5, "b": 0.5}, max_upsample=3)
    assert counts == {"a": 55, "b": 30}
