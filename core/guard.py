"""``python -m core.guard``: command entry of :mod:`core.train.guard_stats` (kept for the documented command)."""
from core.train.guard_stats import main

if __name__ == "__main__":
    raise SystemExit(main())
