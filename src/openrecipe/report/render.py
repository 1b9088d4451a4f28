"""The run report: report.md and a self-contained report.html (plots embedded as PNG data URIs, also
saved under report_assets/) that says in 30 seconds what happened."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from openrecipe.eval.leaderboard import format_cell, to_markdown


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def leaderboard_chart(board: dict[str, Any], out: Path) -> Path | None:
    domains = [d for d in board["domains"] if not d.endswith(" ppl")]
    if not domains or not board["rows"]:
        return None
    plt = _plt()
    figure, axis = plt.subplots(figsize=(7, 3.6), dpi=110)
    width = 0.8 / len(board["rows"])
    for index, row in enumerate(board["rows"]):
        values = [100 * row["cells"].get(d, {}).get("score", float("nan")) for d in domains]
        errors = [
            [100 * (c["score"] - c["low"]) if (c := row["cells"].get(d)) else 0 for d in domains],
            [100 * (c["high"] - c["score"]) if (c := row["cells"].get(d)) else 0 for d in domains],
        ]
        positions = [i + index * width for i in range(len(domains))]
        axis.bar(positions, values, width, yerr=errors, capsize=2, label=row["variant"])
    axis.set_xticks([i + width * (len(board["rows"]) - 1) / 2 for i in range(len(domains))], domains)
    axis.set_ylabel("% correct (95% CI)")
    axis.set_ylim(0, 105)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def size_quality_chart(points: list[dict[str, Any]], out: Path) -> Path | None:
    points = [p for p in points if p.get("size_mb") and not math.isnan(p.get("score", float("nan")))]
    if len(points) < 2:
        return None
    plt = _plt()
    figure, axis = plt.subplots(figsize=(5, 3.4), dpi=110)
    for point in points:
        axis.scatter(point["size_mb"], 100 * point["score"])
        axis.annotate(
            point["variant"],
            (point["size_mb"], 100 * point["score"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    axis.set_xlabel("size on disk (MB)")
    axis.set_ylabel("mean score (%)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def render_report(run_dir: Path, summary: dict[str, Any]) -> tuple[str, str]:
    """(markdown, html) from the run summary assembled by the report stage."""
    md = [f"# {summary['recipe']} — run report", ""]
    body = [f"<h1>{html.escape(summary['recipe'])} — run report</h1>"]
    verdict = summary.get("verdict")
    if verdict:
        md += [f"**{verdict}**", ""]
        body.append(f"<p class=verdict>{html.escape(verdict)}</p>")
    md += ["## Stages", "", "| stage | kind | seconds |", "|---|---|---|"]
    body.append("<h2>Stages</h2><table><tr><th>stage</th><th>kind</th><th>seconds</th></tr>")
    for stage in summary["stages"]:
        md.append(f"| {stage['id']} | {stage['kind']} | {stage['seconds']:.1f} |")
        body.append(
            f"<tr><td>{html.escape(stage['id'])}</td><td>{stage['kind']}</td><td>{stage['seconds']:.1f}</td></tr>"
        )
    body.append("</table>")
    board = summary.get("leaderboard")
    if board:
        md += ["", "## Leaderboard", "", to_markdown(board)]
        body.append(
            "<h2>Leaderboard</h2><table><tr><th>variant</th>"
            + "".join(f"<th>{html.escape(d)}</th>" for d in board["domains"])
            + "</tr>"
        )
        for row in board["rows"]:
            body.append(
                f"<tr><td>{html.escape(row['variant'])}</td>"
                + "".join(f"<td>{html.escape(format_cell(row['cells'].get(d)))}</td>" for d in board["domains"])
                + "</tr>"
            )
        body.append(
            "</table><p>% correct with a 95% interval (Wilson for pass/fail items, bootstrap for graded scores); "
            "ppl = perplexity, lower is better.</p>"
        )
    for title, key in (
        ("Verdict per domain", "verdicts"),
        ("Contamination check", "contamination"),
        ("Identity pass rate", "identity"),
        ("Continued pretraining: domain gain vs forgetting", "continued_pretraining"),
        ("Data cleaning", "cleaning"),
    ):
        rows = summary.get(key)
        if rows:
            md += ["", f"## {title}", ""] + [f"- {line}" for line in rows]
            body.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in rows) + "</ul>")
    images = [Path(p) for p in summary.get("images", []) if Path(p).is_file()]
    if images:
        md += ["", "## Plots", ""] + [f"![{p.stem}]({p.relative_to(run_dir)})" for p in images]
        body.append(
            "<h2>Plots</h2>"
            + "".join(f"<figure>{_img(p)}<figcaption>{html.escape(p.stem)}</figcaption></figure>" for p in images)
        )
    commands = summary.get("commands", [])
    if commands:
        md += ["", "## Use the result", ""] + [f"    {c}" for c in commands]
        body.append("<h2>Use the result</h2><pre>" + html.escape("\n".join(commands)) + "</pre>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        ".verdict{font-size:1.2em;background:#eef6ee;padding:.6em;border-left:4px solid #4a4}"
        "img{max-width:100%}figure{display:inline-block;margin:0 1em 1em 0}"
    )
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(summary['recipe'])}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return "\n".join(md) + "\n", page
