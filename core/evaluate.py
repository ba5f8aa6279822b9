"""``python -m core.evaluate``: command entry of :mod:`core.evaluation.cli` (kept for the documented command)."""
from core.evaluation.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
