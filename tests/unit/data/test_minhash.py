"""One-permutation MinHash estimates Jaccard similarity; band grouping finds the first similar document."""

import random

import numpy as np

from openrecipe.data.minhash import BandIndex, shingle_hashes, signature


def jaccard(a: str, b: str, size: int = 5) -> float:
    first, second = set(shingle_hashes(a, size).tolist()), set(shingle_hashes(b, size).tolist())
    return len(first & second) / len(first | second)


def test_signature_agreement_estimates_jaccard():
    rng = random.Random(0)
    words = [f"w{index}" for index in range(5000)]
    base = rng.choices(words, k=400)
    for changed in (10, 60, 200):
        edited = list(base)
        for position in rng.sample(range(len(edited)), changed):
            edited[position] = rng.choice(words)
        a, b = " ".join(base), " ".join(edited)
        estimate = float(np.mean(signature(a, 256, 5) == signature(b, 256, 5)))
        assert abs(estimate - jaccard(a, b)) < 0.08, (changed, estimate, jaccard(a, b))


def test_short_texts_get_full_signatures():
    values = signature("hi", 128, 5)
    assert len(values) == 128 and (values != np.iinfo(np.uint64).max).all()  # every empty bin borrowed a value
    assert (signature("hello there", 128, 5) == signature("hello there", 128, 5)).all()


def test_short_unrelated_texts_are_not_near_duplicates():
    # Two FAQ rows that share their answer but not their question (Jaccard ~0.6) stay apart.
    answer = "Email support@acme.example or use the chat in the Acme Home app; we reply within 24 hours."
    index = BandIndex(0.85, 128, 5)
    for question in ("how do i contact support", "what is your support email", "how can i get help from acme"):
        index.add(f"{question} {answer}")
    assert index.first_matches().tolist() == [0, 1, 2]


def test_first_matches_points_at_the_earliest_similar_document():
    rng = random.Random(1)
    words = [f"w{index}" for index in range(5000)]
    original = " ".join(rng.choices(words, k=300))
    near = original.replace(original.split(" ")[5], "changed", 1)
    other = " ".join(rng.choices(words, k=300))
    index = BandIndex(0.85, 128, 5)
    for text in (other, original, near, original):
        index.add(text)
    assert index.first_matches().tolist() == [0, 1, 1, 1]
    assert index.first_matches(include=np.array([True, True, True, False])).tolist() == [0, 1, 1, 3]
