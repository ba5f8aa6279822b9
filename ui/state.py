"""Settings and work that survive page switches and file replacement (per user, in ``st.session_state``).

Streamlit forgets a widget's value as soon as a run does not draw the widget: after a visit to
another page, or a run that stopped early because the file was removed. Every widget whose value
should survive is drawn with ``key=kept(key, default)``: its last value is kept in a per-session
store and handed back to the widget before it is created (so no widget here passes ``value=`` or
``index=``; the default comes from :func:`kept`).

Uploads cannot be handed back to a file uploader, so :func:`kept_upload` remembers the last file
(or files) a page received and offers them again when the page is opened anew; removing the file
in the uploader forgets it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

#: Session key of the store of kept widget values.
STORE = "_kept_values"
#: Session key of the store of kept uploads (per uploader key).
UPLOADS = "_kept_uploads"


def kept(key: str, default: Any, options: Sequence[Any] | None = None) -> str:
    """Restore the widget ``key``'s last value (else ``default``) before it is drawn; returns ``key``.

    With ``options`` (a select box or radio), a remembered value no longer among them falls back to
    ``default`` (or the first option).
    """
    state = st.session_state
    store = state.setdefault(STORE, {})
    value = state[key] if key in state else store.get(key, default)
    if options is not None and value not in options:
        value = default if default in options else (options[0] if len(options) else None)
    state[key] = value
    store[key] = value
    return key


def remember(key: str, value: Any) -> None:
    """Set a kept widget's value (before the widget is drawn in this run, e.g. from a hand-off)."""
    st.session_state.setdefault(STORE, {})[key] = value
    st.session_state[key] = value


def forget(*keys: str) -> None:
    """Drop kept values (the widgets go back to their defaults)."""
    store = st.session_state.setdefault(STORE, {})
    for key in keys:
        store.pop(key, None)
        st.session_state.pop(key, None)


def kept_upload(key: str, draw: Callable[[], Any]) -> tuple[list[tuple[str, bytes]] | None, bool]:
    """Draw the file uploader ``key`` (``draw`` draws it and returns its value: one file, a list, or
    ``None``); returns its files as ``(name, bytes)`` pairs and whether they are remembered ones.

    The files are the ones the uploader holds now, else the last ones it held before it was hidden
    (another page, another input choice): ``(pairs, True)``; ``(None, False)`` when there are none.
    Removing the file(s) in the uploader forgets them.
    """
    uploads = st.session_state.setdefault(UPLOADS, {})
    seen = f"_had_files_{key}"
    fresh = key not in st.session_state
    files = draw()
    current = files if isinstance(files, list) else ([files] if files is not None else [])
    if current:
        pairs = [(f.name, f.getvalue()) for f in current]
        uploads[key] = pairs
        st.session_state[seen] = True
        return pairs, False
    if st.session_state.pop(seen, False) and not fresh:      # the user removed the file(s)
        uploads.pop(key, None)
        return None, False
    remembered = uploads.get(key)
    return remembered, remembered is not None


def forget_upload(key: str) -> None:
    """Forget the remembered files of the uploader ``key``."""
    st.session_state.setdefault(UPLOADS, {}).pop(key, None)
