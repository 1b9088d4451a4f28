from openrecipe.quantize.torchao_backend import int8_group_size, linear_input_sizes


def test_group_divides_every_linear_input():
    smollm = {"hidden_size": 576, "num_attention_heads": 9, "head_dim": 64, "intermediate_size": 1536}
    assert linear_input_sizes(smollm) == {576, 1536}
    assert int8_group_size(smollm) == 64  # 576 = 4.5 x 128
    llama = {"hidden_size": 4096, "num_attention_heads": 32, "intermediate_size": 11008}
    assert int8_group_size(llama) == 128


def test_no_group_fits_falls_back_to_per_row():
    assert int8_group_size({"hidden_size": 100, "num_attention_heads": 4, "intermediate_size": 200}) is None
