"""``python -m core.examples``: command entry of :mod:`core.data.examples` (kept for the documented command)."""
from core.data.examples import main

if __name__ == "__main__":
    raise SystemExit(main())
