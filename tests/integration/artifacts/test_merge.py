import pytest
import torch
from safetensors.torch import load_file

from openrecipe.errors import OpenRecipeError
from openrecipe.merge.mergekit_merge import MergeSettings, run_merge


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize(
    ("method", "extra"),
    [("linear", {}), ("slerp", {"t": 0.3}), ("ties", {}), ("dare_ties", {}), ("task_arithmetic", {})],
)
def test_each_method_gives_finite_weights_of_the_same_shapes(tmp_path, tiny_model_dir, tiny_model_dir_b, method, extra):
    settings = MergeSettings(
        method=method,
        base=str(tiny_model_dir),
        models=[{"model": str(tiny_model_dir_b), "weight": 0.6, "density": 0.5}],
        **extra,
    )
    run_merge(settings, tmp_path / "out")
    merged, reference = weights(tmp_path / "out"), weights(tiny_model_dir)
    assert merged.keys() == reference.keys() or set(reference) - set(merged) <= {"lm_head.weight"}
    for key, tensor in merged.items():
        assert tensor.shape == reference[key].shape
        assert torch.isfinite(tensor).all()
    assert (tmp_path / "out" / "tokenizer.json").is_file() and (tmp_path / "out" / "chat_template.jinja").is_file()


def test_linear_merge_of_a_model_with_itself_is_itself(tmp_path, tiny_model_dir):
    import shutil

    twin = shutil.copytree(tiny_model_dir, tmp_path / "twin")  # mergekit refuses the same path twice
    settings = MergeSettings(method="linear", models=[{"model": str(twin), "weight": 0.5}], base=str(tiny_model_dir))
    run_merge(settings, tmp_path / "out")
    merged, reference = weights(tmp_path / "out"), weights(tiny_model_dir)
    for key, tensor in merged.items():
        torch.testing.assert_close(tensor, reference[key])


def test_preflight_refuses_different_shapes(tmp_path, tiny_model_dir, tokenizer):
    from tests.conftest import build_tiny_llama

    wider = build_tiny_llama(tmp_path / "wider", tokenizer, hidden=128)
    settings = MergeSettings(method="linear", base=str(tiny_model_dir), models=[{"model": str(wider)}])
    with pytest.raises(OpenRecipeError, match="tensor shapes differ"):
        run_merge(settings, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_preflight_refuses_different_vocabularies(tmp_path, tiny_model_dir):
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    data = json.loads((other / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    first = next(iter(vocab))
    vocab["zz" + first] = vocab.pop(first)
    (other / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(OpenRecipeError, match="vocabularies differ"):
        run_merge(
            MergeSettings(method="linear", base=str(tiny_model_dir), models=[{"model": str(other)}]),
            tmp_path / "out",
        )


def test_settings_validation():
    with pytest.raises(ValueError, match="needs `base`"):
        MergeSettings(method="ties", models=[{"model": "a"}])
    with pytest.raises(ValueError, match="exactly one"):
        MergeSettings(method="slerp", base="b", models=[{"model": "a"}, {"model": "c"}])
