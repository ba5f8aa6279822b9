"""``python -m core.guard``: command entry of :mod:`core.trust.guard` (kept for the documented command)."""
from core.trust.guard import main

if __name__ == "__main__":
    raise SystemExit(main())
