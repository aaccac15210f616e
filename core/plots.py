"""Confusion-matrix figure for ``nameorigin eval --plot``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import PlotError as PlotError
from core.metrics import IntArray


def _supported_formats() -> dict[str, str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = dict(FigureCanvasAgg.get_supported_filetypes())
    formats.pop("pgf", None)  # needs a LaTeX installation, found missing only after the whole evaluation
    return formats


def check_plot_path(path: str | os.PathLike[str]) -> str:
    """Fail early, before any slow work, if ``path`` cannot take the plot; returns the image format."""
    target = Path(path)
    if target.is_dir():  # before the extension: "no file extension" would not say what is wrong
        example = target / "confusion.png"
        raise PlotError(f"cannot write a plot to {target}: it is a folder; give a file such as {example}")
    image_format = target.suffix.removeprefix(".").lower()
    formats = _supported_formats()
    if image_format not in formats:
        given = f"unsupported format {image_format!r}" if image_format else "no file extension"
        raise PlotError(f"cannot write a plot to {target}: {given}; use one of .{', .'.join(sorted(formats))}")
    folder = target.parent
    if folder.exists() and not folder.is_dir():
        raise PlotError(f"cannot write a plot to {target}: {folder} is not a folder")
    if not folder.is_dir():
        raise PlotError(f"cannot write a plot to {target}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PlotError(f"cannot write a plot to {target}: folder {folder} is not writable")
    return image_format


def save_confusion_plot(
    confusion: IntArray, labels: Sequence[str], path: str | os.PathLike[str], source: str = ""
) -> None:
    """Write a row-normalized confusion matrix (rows: truth, columns: prediction) as an image.

    ``source`` heads the title: which model, under which prior, so an image read later says what it shows.

    The image is written to a temporary file beside ``path`` and moved into place, so a
    reader never sees half an image. Raises ``PlotError`` when it cannot be written.
    """
    image_format = check_plot_path(path)
    # A Figure on the Agg canvas, not pyplot: headless, and the caller's backend and open figures are left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)
    figure = Figure(figsize=(9, 8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted language")
    axes.set_ylabel("true language")
    heading = f"{source}\n" if source else ""
    axes.set_title(f"{heading}Confusion on the fixed test split (row-normalized; numbers are counts)")
    for row in range(len(labels)):
        for col in range(len(labels)):
            if confusion[row, col]:
                colour = "white" if shares[row, col] > 0.5 else "black"
                axes.text(col, row, str(confusion[row, col]), ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    target = Path(path)
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        figure.savefig(tmp_name, format=image_format)
        os.chmod(tmp_name, 0o644)  # mkstemp creates files 0600; an image is meant to be shared
        os.replace(tmp_name, target)
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: e.g. .pgf without LaTeX
        raise PlotError(f"cannot write a plot to {target}: {exc}") from exc
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)  # already moved into place unless something failed
