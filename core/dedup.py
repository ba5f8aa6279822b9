"""``python -m core.dedup``: command entry of :mod:`core.trust.dedup` (kept for the documented command)."""
from core.trust.dedup import main

if __name__ == "__main__":
    raise SystemExit(main())
