"""``python -m gmmn``: the same as the ``gmmn`` console script."""

from gmmn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
