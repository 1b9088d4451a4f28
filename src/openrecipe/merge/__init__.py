"""Merging models of one architecture through mergekit, with a pre-flight compatibility check."""
