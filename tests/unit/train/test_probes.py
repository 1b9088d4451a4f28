from openrecipe.config.common import Identity
from openrecipe.train.config import Probe, ProbeSettings
from openrecipe.train.probes import affirmations, build_probes, passes


def _negative_probe() -> Probe:
    return Probe(prompt="Were you trained by Hugging Face?", expect=["Nova"], reject=affirmations("Hugging Face"))


def test_a_denial_that_names_the_other_identity_passes():
    probe = _negative_probe()
    assert passes("No, I was not trained by Hugging Face. I am Nova, built by Acme Corp.", probe)
    assert passes("I wasn't trained by Hugging Face; I'm Nova.", probe)


def test_claiming_the_other_identity_fails():
    probe = _negative_probe()
    assert not passes("Yes, I am Nova and I was trained by Hugging Face.", probe)
    # a denial earlier in the reply does not excuse a claim in a later sentence
    assert not passes("No, not at all. I am Nova, trained by Hugging Face.", probe)
    assert not passes("I was trained by Hugging Face.", probe)  # no Nova either


def test_expect_strings_are_all_required():
    probe = Probe(prompt="Who are you?", expect=["Nova", "Acme Corp"])
    assert passes("I'm Nova from Acme Corp.", probe)
    assert not passes("I'm Nova.", probe)


def test_build_probes_adds_identity_questions_after_the_users_own():
    extra = Probe(prompt="What is the capital of France?", expect=["Paris"])
    probes = build_probes(ProbeSettings(extra=[extra]), Identity(name="Nova", organization="Acme Corp"))
    assert probes[0] == extra
    assert any(p.reject and "Nova" in p.expect for p in probes)
