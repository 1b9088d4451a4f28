"""Evaluation: test sets, metrics, retrieval, a per-domain leaderboard of every variant with paired tests."""
