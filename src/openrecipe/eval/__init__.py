"""Evaluation: test sets, metrics, a per-domain leaderboard of every variant, reports."""
