"""Saving matplotlib figures reproducibly: two runs write byte-identical files.

PNG: no ``Software`` text chunk (it names the matplotlib version, so a report would change bytes
with an upgrade); PDF/SVG: no creation date, and SVG element ids from a fixed salt instead of a
random one. Every figure qesim writes goes through :func:`save_figure`.
"""

from __future__ import annotations

from pathlib import Path

#: fixed salt for the ids matplotlib puts into SVG files (it is random otherwise)
SVG_HASHSALT = "qesim"


def metadata_for(path: Path) -> dict:
    """The ``metadata=`` argument of ``savefig`` that leaves out the varying fields for ``path``'s format."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext == "png":
        return {"Software": None}
    if ext in ("svg", "pdf"):
        return {"Creator": None, "Date": None} if ext == "svg" else {"Creator": None, "Producer": None,
                                                                     "CreationDate": None}
    return {}


def save_figure(fig, path, **kw) -> Path:
    """``fig.savefig(path, **kw)`` with reproducible metadata; closes the figure; returns the path."""
    import matplotlib
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT}):
        fig.savefig(path, metadata=metadata_for(path), **kw)
    plt.close(fig)
    return path
