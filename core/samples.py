"""``python -m core.samples``: command entry of :mod:`core.data.samples` (kept for the documented command)."""
from core.data.samples import main

if __name__ == "__main__":
    raise SystemExit(main())
