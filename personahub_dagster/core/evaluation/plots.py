"""Small charts as base64 PNG: for materialization metadata and the HTML report, both of which show
images inline (a data URI), so nothing is written next to them and nothing is fetched."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable


def png_base64(
    draw: Callable[[object], object],
    title: str,
    xlabel: str | None = None,
    ylabel: str | None = None,
    size: tuple[float, float] = (5, 2.6),
) -> str:
    """Draw on a fresh matplotlib axis (headless Agg backend) and return the PNG, base64-encoded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=100)
    try:
        draw(ax)
        ax.set_title(title, fontsize=10)
        if xlabel:
            ax.set_xlabel(xlabel, fontsize=9)
        if ylabel:
            ax.set_ylabel(ylabel, fontsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
