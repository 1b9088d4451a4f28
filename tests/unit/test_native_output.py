import os

from openrecipe.utils.native_output import native_output_to


def test_native_writes_go_to_the_log_and_the_terminal_is_restored(tmp_path, capfd):
    log = tmp_path / "run" / "native.log"
    with native_output_to(log):
        os.write(1, b"ggml: falling back to q5_0\n")
        os.write(2, b"llama.cpp: loaded CPU backend\n")
    os.write(1, b"summary line\n")
    captured = capfd.readouterr()
    assert "falling back" not in captured.out + captured.err and "summary line" in captured.out
    assert log.read_bytes() == b"ggml: falling back to q5_0\nllama.cpp: loaded CPU backend\n"
    with native_output_to(log):
        os.write(1, b"again\n")
    assert log.read_text().endswith("again\n")  # appended, never truncated
