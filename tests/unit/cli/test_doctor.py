"""`openrecipe doctor` reports the CPU, the measured precision choice and llama.cpp's variant."""

import json

from typer.testing import CliRunner

from openrecipe.cli.main import app


def test_doctor_json_names_cpu_precision_and_llama_cpp():
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["cpu"]["machine"] and isinstance(report["cpu"]["features"], list)
    assert report["torch"]["cpu_training_precision"] in ("fp32", "bf16")
    assert report["torch"]["cpu_fp32_gflops"] > 0
    assert "cpu_probe_load_per_cpu" in report["torch"]  # the load the probe ran under (None: not recorded)
    llama = report["llama_cpp"]
    assert "version" in llama or "not installed" in llama["error"]
    distributed = report["distributed"]
    assert distributed["strategies"][:2] == ["ddp", "fsdp"]
    assert ("deepspeed" in distributed["strategies"]) == (distributed["deepspeed"] is not None)


def test_doctor_table_prints():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0 and "cpu matmul" in result.output and "precision" in result.output
    assert "load" in result.output and "multi-process" in result.output
