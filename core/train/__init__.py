"""Training command lines (``python -m core.train.<task>``), their shared loop helpers and augmentation."""
