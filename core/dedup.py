"""``python -m core.dedup``: command entry of :mod:`core.data.dedup_split` (kept for the documented command)."""
from core.data.dedup_split import main

if __name__ == "__main__":
    raise SystemExit(main())
