"""The fine-tuning ladder's config and analysis: the `kind` union, the best rate per rung, the L(D) fit and
the verdicts on whether the best rate moves with rank and data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from openrecipe.ladder.config import LadderSettings, PretrainLadderSettings
from openrecipe.ladder.finetune_analysis import analyse, best_rate, fit_data_law, law_at
from openrecipe.ladder.finetune_config import FinetuneLadderSettings

FT = {"kind": "finetune", "fractions": [0.25, 0.5, 1.0], "ranks": [4, 16], "learning_rates": [1e-4, 1e-3, 1e-2]}


def test_kind_picks_the_ladder_and_no_kind_is_pretraining():
    adapter = TypeAdapter(LadderSettings)
    assert isinstance(adapter.validate_python(FT), FinetuneLadderSettings)
    pretrain = {
        "sizes": [{"width": 8 * k, "depth": 1} for k in range(1, 6)],
        "budgets": [1, 2, 3],
        "learning_rates": [1e-3],
        "predict": {"width": 64, "depth": 2, "tokens": 10},
        "family": {"head_dim": 8},
    }
    assert isinstance(adapter.validate_python(pretrain), PretrainLadderSettings)
    with pytest.raises(ValidationError, match="fractions"):
        adapter.validate_python({**FT, "fractions": [0.5, 0.25, 1.0]})
    with pytest.raises(ValidationError, match=r"\(0, 1\]"):
        adapter.validate_python({**FT, "fractions": [0.25, 0.5, 2.0]})
    with pytest.raises(ValidationError, match="finetune_typo|Extra inputs"):
        adapter.validate_python({**FT, "finetune_typo": 1})


def test_best_rate_interpolates_in_log_rate_and_flags_edges():
    runs = [{"learning_rate": lr, "eval_loss": (math.log10(lr) + 2.7) ** 2} for lr in (1e-4, 1e-3, 1e-2)]
    best = best_rate(runs)
    assert best["grid"] == 1e-3 and not best["edge"]
    assert best["interpolated"] == pytest.approx(10**-2.7, rel=1e-6)
    falling = [{"learning_rate": lr, "eval_loss": -math.log10(lr)} for lr in (1e-4, 1e-3, 1e-2)]
    assert best_rate(falling)["edge"] and best_rate(falling)["interpolated"] == 1e-2


def test_data_law_recovers_known_coefficients():
    rows = np.array([10.0, 20, 40, 80, 160, 320])
    truth = {"E": 0.8, "B": 5.0, "beta": 0.6}
    law = fit_data_law(rows, law_at(truth, rows))
    for key, value in truth.items():
        assert law[key] == pytest.approx(value, rel=1e-3)


def _runs(best_of, fractions=FT["fractions"], data_loss=lambda rows: 1 + 0.5 / rows**0.5):
    """A grid whose best rate at each (fraction, rank) is best_of(fraction, rank), and whose loss at that rate
    is data_loss(rows) with 100 training rows in all."""
    runs = []
    for fraction in fractions:
        for rank in FT["ranks"]:
            for lr in FT["learning_rates"]:
                loss = data_loss(100 * fraction) + 0.1 * (math.log10(lr) - math.log10(best_of(fraction, rank))) ** 2
                runs.append(
                    {
                        "fraction": fraction,
                        "rank": rank,
                        "method": "lora",
                        "learning_rate": lr,
                        "eval_loss": loss,
                        "train_rows": int(100 * fraction),
                    }
                )
    for lr in (1e-5, 1e-4, 1e-3):
        loss = 1 + 0.05 + 0.1 * (math.log10(lr) + 4.2) ** 2
        runs.append(
            {"fraction": 1.0, "rank": None, "method": "full", "learning_rate": lr, "eval_loss": loss, "train_rows": 100}
        )
    return runs


def test_verdicts_say_whether_the_best_rate_moves():
    settings = FinetuneLadderSettings(**FT, full={"learning_rates": [1e-5, 1e-4, 1e-3]}, bootstrap=10)
    noise = [{"eval_loss": 1.001, "reference": 1.0}]
    steady = analyse(settings, _runs(lambda f, r: 10**-3.1), noise, 2.0, seed=0)
    assert not steady["verdicts"]["rank"]["moves"] and not steady["verdicts"]["data"]["moves"]
    assert steady["verdicts"]["lora_vs_full"]["ratios"]["f1/r4"] == pytest.approx(10**1.1, rel=0.01)
    assert "does not move with rank" in steady["headline"]
    moving = analyse(settings, _runs(lambda f, r: 10**-3.4 * (r / 4) ** 0.5 * f**-0.5), noise, 2.0, seed=0)
    assert moving["verdicts"]["rank"]["moves"] and moving["verdicts"]["data"]["moves"]
    assert moving["verdicts"]["data"]["mean_slope"] < 0 and "down as data grows" in moving["verdicts"]["data"]["text"]
    table = moving["transfer"]["across_data"]["rank 4"]
    assert [row["rung"] for row in table["rungs"]] == ["f0.25", "f0.5", "f1"]
    assert table["adjacent"][0]["kendall_tau"] is not None
    law = next(entry for entry in steady["data_laws"] if entry["rank"] == 4)
    assert law["fit"]["law"]["beta"] == pytest.approx(0.5, rel=0.05)


def test_a_loss_falling_faster_with_data_is_called_out_before_the_law_is_trusted():
    fractions = [0.125, 0.25, 0.5, 1.0]
    settings = FinetuneLadderSettings(**{**FT, "fractions": fractions}, bootstrap=10)
    noise = [{"eval_loss": 1.001, "reference": 1.0}]
    # the shape L(D) takes: each doubling of the rows lowers the loss less than the one before
    steady = analyse(settings, _runs(lambda f, r: 1e-3, fractions), noise, 2.0, seed=0)
    said = steady["verdicts"]["data_law"]
    assert said["accelerating_ranks"] == [] and "less per e-fold" in said["text"]
    assert all(abs(error) < 0.01 for error in said["checks"].values())
    # early in training: each doubling lowers it more (0.05, 0.1, 0.3; 12, 25, 50, 100 rows), which no
    # E + B/D^beta can follow
    early = dict(zip([12.5, 25.0, 50.0, 100.0], [1.6, 1.55, 1.45, 1.15], strict=True))
    falling = analyse(settings, _runs(lambda f, r: 1e-3, fractions, data_loss=early.__getitem__), noise, 2.0, seed=0)
    law = next(entry for entry in falling["data_laws"] if entry["rank"] == 4)
    assert law["accelerating"] and law["drops_per_efold"] == pytest.approx(
        [0.05 / math.log(25 / 12), 0.1 / math.log(2), 0.3 / math.log(2)]
    )
    said = falling["verdicts"]["data_law"]
    assert said["accelerating_ranks"] == [4, 16] and said["checks"][4] > 0.1  # predicted too high
    assert "too high a loss" in said["text"] and "more epochs" in said["text"] and said["text"] in falling["headline"]
    # more rows, a higher loss: the law does not apply, and the verdict does not say "lowered less"
    rising = dict(zip([12.5, 25.0, 50.0, 100.0], [1.6, 1.5, 1.52, 1.45], strict=True))
    odd = analyse(settings, _runs(lambda f, r: 1e-3, fractions, data_loss=rising.__getitem__), noise, 2.0, seed=0)
    assert "did not lower the held-out loss" in odd["verdicts"]["data_law"]["text"]
    # a rise smaller than the seed noise is noise: the verdict looks at the shape instead
    blip = dict(zip([12.5, 25.0, 50.0, 100.0], [1.6, 1.601, 1.55, 1.4], strict=True))
    noisy = [{"eval_loss": 1.01, "reference": 1.0}]  # std ~0.007, band ~0.02
    seen = analyse(settings, _runs(lambda f, r: 1e-3, fractions, data_loss=blip.__getitem__), noisy, 2.0, seed=0)
    assert "did not lower" not in seen["verdicts"]["data_law"]["text"] and "too high a loss" in seen["headline"]
    assert "  " not in seen["headline"]  # no full fine-tuning here: no empty sentence left between the others


def test_report_states_the_findings(tmp_path):
    from openrecipe.ladder.finetune_report import write_report

    settings = FinetuneLadderSettings(**FT, full={"learning_rates": [1e-5, 1e-4, 1e-3]}, bootstrap=10)
    result = analyse(settings, _runs(lambda f, r: 10**-3.1), [{"eval_loss": 1.001, "reference": 1.0}], 2.0, seed=0)
    result["data"] = {"sources": [{"label": "acme", "weight": 1.0, "train_rows": 100, "heldout_rows": 10}]}
    result["data"]["heldout_examples"] = 10
    result["model"] = "tiny"
    result["budget"] = {"runs": 22, "total_seconds": 10.0, "cpu_seconds": 9.0, "train_seconds": 5.0, "run_seconds": 8}
    write_report(result, tmp_path)
    text = (tmp_path / "ladder.md").read_text()
    assert "does not move with rank" in text and "~10x" in text and "| f0.25 | 0.001 |" in text
    assert "Data law: at every rank" in text and "| loss drop per e-fold of rows" in text
    assert (tmp_path / "ladder.html").read_text().count("<img") == 2
