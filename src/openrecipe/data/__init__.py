"""Data: read what users have, validate strictly, clean with a report, mix, tokenize."""
