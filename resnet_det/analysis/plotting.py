"""Figure output shared by the analysis tools."""
from __future__ import annotations

from pathlib import Path


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` (parents created) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
