"""AppTest steps shared by the tests that follow a hand-off from the Compare models page."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def open_from_comparison(picker: str, button: str, radios: dict[str, str] | None = None,
                         timeout: float = 180) -> tuple[AppTest, str]:
    """On the Compare models page (after setting ``radios``), choose the last option of the select box
    ``picker`` and press ``button``; returns the app (now on the page handed to) and the option chosen."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    at.switch_page("pages/model_comparison.py").run()
    for key, value in (radios or {}).items():
        at.radio(key=key).set_value(value).run()
    select = at.selectbox(key=picker)
    chosen = select.options[-1]
    select.set_value(chosen).run()
    at.button(key=button).click().run()
    assert not at.exception, at.exception
    return at, chosen
