"""Scaling ladders: one recipe on rungs of growing scale, a fitted law, and a checked prediction."""
