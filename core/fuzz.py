"""``python -m core.fuzz``: command entry of :mod:`core.evaluation.fuzz` (kept for the documented command)."""
from core.evaluation.fuzz import main

if __name__ == "__main__":
    raise SystemExit(main())
