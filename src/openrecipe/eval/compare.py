"""Which variant wins each domain: every variant against the baseline on the same items (paired test,
Holm-adjusted per domain), and a verdict that names a winner only when the difference is significant."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from openrecipe.eval.stats import PairedTest, holm_adjust, paired_test

ALPHA = 0.05


def item_scores(outcome: dict[str, Any]) -> dict[str, dict[str, float]]:
    """domain -> item key -> score; repeated ids in one domain are told apart by their position."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    seen: dict[tuple[str, str], int] = defaultdict(int)
    for result in outcome["results"]:
        domain, item_id = result["domain"], str(result.get("id", ""))
        count = seen[(domain, item_id)]
        seen[(domain, item_id)] += 1
        out[domain][f"{item_id}#{count}"] = result["score"]
    return out


def _pair(a: dict[str, float], b: dict[str, float], *, seed: int) -> PairedTest | None:
    shared = [key for key in a if key in b]
    if not shared:
        return None
    return paired_test([a[k] for k in shared], [b[k] for k in shared], seed=seed)


def _p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def compare_to_baseline(
    outcomes: list[dict[str, Any]], baseline: str, *, alpha: float = ALPHA, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per (variant, domain): scores, difference in points, paired p-value (raw and Holm-adjusted
    over the variants compared in that domain) and whether it is significant at `alpha`."""
    scores = {o["variant"]: item_scores(o) for o in outcomes}
    if baseline not in scores:
        return []
    rows: list[dict[str, Any]] = []
    for domain, base_items in scores[baseline].items():
        domain_rows = []
        for name, by_domain in scores.items():
            if name == baseline or domain not in by_domain:
                continue
            test = _pair(by_domain[domain], base_items, seed=seed)
            if test is None:
                continue
            domain_rows.append(
                {
                    "variant": name,
                    "domain": domain,
                    "n": test.n,
                    "score": test.mean_a,
                    "baseline_score": test.mean_b,
                    "delta_points": 100 * test.delta,
                    "only_variant": test.only_a,
                    "only_baseline": test.only_b,
                    "test": test.test,
                    "p_value": test.p_value,
                }
            )
        for row, adjusted in zip(domain_rows, holm_adjust([r["p_value"] for r in domain_rows]), strict=True):
            row["p_adjusted"] = adjusted
            row["significant"] = adjusted < alpha
        rows += domain_rows
    return rows


def domain_verdicts(
    outcomes: list[dict[str, Any]], baseline: str | None, *, alpha: float = ALPHA, seed: int = 0
) -> list[dict[str, Any]]:
    """Per domain: the top-scoring variant is the winner only if a paired test (Holm-adjusted over its
    comparisons) separates it from every other variant; otherwise say what cannot be told apart."""
    scores = {o["variant"]: item_scores(o) for o in outcomes}
    domains: list[str] = []
    for by_domain in scores.values():
        domains += [d for d in by_domain if d not in domains]
    verdicts = []
    for domain in domains:
        present = {name: by_domain[domain] for name, by_domain in scores.items() if domain in by_domain}
        means = {name: sum(items.values()) / len(items) for name, items in present.items() if items}
        if not means:
            continue
        top = max(means, key=means.__getitem__)
        others = [name for name in present if name != top]
        tests = {name: _pair(present[top], present[name], seed=seed) for name in others}
        tests = {name: test for name, test in tests.items() if test is not None}
        adjusted = dict(zip(tests, holm_adjust([t.p_value for t in tests.values()]), strict=True))
        tied = [name for name in tests if adjusted[name] >= alpha]
        n = max((t.n for t in tests.values()), default=len(present[top]))
        verdict: dict[str, Any] = {"domain": domain, "n": n, "top": top, "tied_with_top": tied, "winner": None}
        runner_up = max(tests, key=lambda name: means[name], default=None)
        if runner_up is None:
            verdict["text"] = f"{domain}: only {top} was scored ({_pct(means[top])}, n = {n})"
        elif not tied:
            verdict["winner"] = top
            verdict["text"] = (
                f"{domain}: {top} wins — {_pct(means[top])} vs {_pct(means[runner_up])} for {runner_up} "
                f"({tests[runner_up].test}, {_p(adjusted[runner_up])}, n = {n})"
            )
        elif baseline is not None and (top == baseline or baseline in tied):
            closest = baseline if top != baseline else max(tied, key=lambda name: means[name])
            verdict["text"] = (
                f"{domain}: {top} ({_pct(means[top])}) and {closest} ({_pct(means[closest])}) are not "
                f"distinguishable at n = {n} ({tests[closest].test}, {_p(adjusted[closest])})"
            )
        else:
            group = [top, *sorted(tied, key=lambda name: -means[name])]
            beat = ""
            if baseline is not None and baseline in tests:
                beat = f" all beat {baseline} ({_pct(means[baseline])}) but"
            verdict["text"] = (
                f"{domain}: {', '.join(f'{g} ({_pct(means[g])})' for g in group)}{beat} are not distinguishable "
                f"from each other at n = {n}"
            )
        verdicts.append(verdict)
    return verdicts
