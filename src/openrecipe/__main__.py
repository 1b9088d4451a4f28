"""`python -m openrecipe ...` — the same as the `openrecipe` command (used by torchrun and tests)."""

from openrecipe.cli.main import main

if __name__ == "__main__":
    main()
