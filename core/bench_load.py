"""``python -m core.bench_load``: command entry of :mod:`core.evaluation.bench_load` (kept for the documented command)."""
from core.evaluation.bench_load import main

if __name__ == "__main__":
    raise SystemExit(main())
