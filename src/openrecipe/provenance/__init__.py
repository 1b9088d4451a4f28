"""Provenance, on the bottom floor: stage cache keys, input/artifact hashes, the run manifest.
The runner writes them; publish and reproduce read them."""
