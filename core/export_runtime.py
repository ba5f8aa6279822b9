"""``python -m core.export_runtime``: command entry of :mod:`core.serving.export` (kept for the documented command)."""
from core.serving.export import main

if __name__ == "__main__":
    raise SystemExit(main())
