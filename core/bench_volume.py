"""``python -m core.bench_volume``: command entry of :mod:`core.evaluation.bench_volume` (kept for the documented command)."""
from core.evaluation.bench_volume import main

if __name__ == "__main__":
    main()
