"""The Analyse page's probability chart as a plain Vega-Lite spec (``st.vega_lite_chart``).

It draws the class probabilities with the Vega renderer Streamlit already ships instead of
Plotly: in a fresh browser tab the first Plotly chart costs about 1.3 s
of CPU (loading plotly.js). Each member's probabilities are in the table below it. The spec is
written as a dict, not with Altair, whose schema validation and data hashing cost the server about
0.1 s per chart. With many sessions on one machine, browsers included (``python -m core.bench_load``),
Plotly was the largest single cost of showing a result.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.imaging.viz import CLASS_COLOURS

OTHER_COLOUR = "#b0b0b0"


def probability_chart(classes: Sequence[str], probs: Sequence[float], labels: dict[str, str],
                      title: str = "Class probabilities") -> dict[str, Any]:
    """Horizontal bars of class probabilities (percent, classes in their order), the decision in its class colour."""
    best = max(range(len(probs)), key=lambda i: probs[i])
    values = [{"class": labels[c], "percent": round(100 * float(p), 4), "text": f"{100 * float(p):.1f} %",
               "colour": CLASS_COLOURS.get(c, "#888") if i == best else OTHER_COLOUR}
              for i, (c, p) in enumerate(zip(classes, probs))]
    encoding = {"y": {"field": "class", "type": "nominal", "sort": None, "title": None},
                "x": {"field": "percent", "type": "quantitative", "scale": {"domain": [0, 100]},
                      "title": "probability (%)"},
                "tooltip": [{"field": "class"}, {"field": "percent", "format": ".2f"}]}
    return {"title": title, "height": 200, "data": {"values": values}, "encoding": encoding,
            "layer": [{"mark": "bar", "encoding": {"color": {"field": "colour", "type": "nominal", "scale": None,
                                                              "legend": None}}},
                      {"mark": {"type": "text", "align": "left", "dx": 4},
                       "encoding": {"text": {"field": "text", "type": "nominal"}}}]}

