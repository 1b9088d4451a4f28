"""Full-pipeline open source: publish a run as a bundle, and reproduce a bundle to verify it."""
