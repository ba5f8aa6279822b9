"""The app's version, stamped on every report (bump it with each release)."""
from __future__ import annotations

APP_NAME = "Brain-tumour MRI dashboard"
APP_VERSION = "0.5.0"
