"""``python -m bench`` (``make bench``, ``make bench QUICK=1``)."""

from bench.runner import main

if __name__ == "__main__":  # spawned appender processes import this module too
    raise SystemExit(main())
