from openrecipe.quantize.torchao_backend import int8_group_size, linear_input_sizes


def test_group_divides_every_linear_input():
    smollm = {"hidden_size": 576, "num_attention_heads": 9, "head_dim": 64, "intermediate_size": 1536}
    assert linear_input_sizes(smollm) == {576, 1536}
    assert int8_group_size(smollm) == 64  # 576 = 4.5 x 128
    llama = {"hidden_size": 4096, "num_attention_heads": 32, "intermediate_size": 11008}
    assert int8_group_size(llama) == 128


def test_no_group_fits_falls_back_to_per_row():
    assert int8_group_size({"hidden_size": 100, "num_attention_heads": 4, "intermediate_size": 200}) is None


def test_int4_is_answered_with_the_gguf_path():
    import pydantic
    import pytest

    from openrecipe.errors import OpenRecipeError
    from openrecipe.quantize.torchao_backend import QuantMethod, check_method

    with pytest.raises(OpenRecipeError) as info:
        check_method("int4")
    assert "q4_k_m" in info.value.format() and "--gguf q4_k_m" in info.value.format()
    with pytest.raises(pydantic.ValidationError, match="q4_k_m"):
        pydantic.TypeAdapter(list[QuantMethod]).validate_python(["int8", "int4"])
    assert pydantic.TypeAdapter(list[QuantMethod]).validate_python(["int8", "int8_row"]) == ["int8", "int8_row"]
    with pytest.raises(OpenRecipeError, match="unknown quantization method 'int3'"):
        check_method("int3")
