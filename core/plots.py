"""Confusion-matrix figure for ``nameorigin eval --plot``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from core.metrics import IntArray


def save_confusion_plot(confusion: IntArray, labels: Sequence[str], path: str | os.PathLike[str]) -> None:
    """Write a row-normalized confusion matrix (rows: truth, columns: prediction) as an image."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)
    figure, axes = plt.subplots(figsize=(9, 8), dpi=120)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted language")
    axes.set_ylabel("true language")
    axes.set_title("Confusion on the fixed test split (row-normalized; numbers are counts)")
    for row in range(len(labels)):
        for col in range(len(labels)):
            if confusion[row, col]:
                colour = "white" if shares[row, col] > 0.5 else "black"
                axes.text(col, row, str(confusion[row, col]), ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
