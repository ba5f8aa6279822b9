"""``python -m core.registry``: command entry of :mod:`core.serving.registry` (kept for the documented command)."""
from core.serving.registry import main

if __name__ == "__main__":
    raise SystemExit(main())
