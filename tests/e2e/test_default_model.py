import pytest
from typer.testing import CliRunner

from openrecipe.cli.main import app

pytestmark = pytest.mark.slow


def test_default_model_knows_the_capital_of_france(default_model_dir):
    result = CliRunner().invoke(app, ["chat", "default", "-p", "What is the capital of France?"])
    assert result.exit_code == 0, result.output
    assert "Paris" in result.output
