"""``python -m core.bench``: command entry of :mod:`core.evaluation.bench` (kept for the documented command)."""
from core.evaluation.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
