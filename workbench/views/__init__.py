"""Pictures, charts and result tables, one module for each kind of thing drawn:

- `picture`: the comparison picture (PIL): per sample image the input, PyTorch's output, each format's, and
  the difference of the format that differs most (`side_by_side`, `pages`, `palette`, `overlay`);
- `chart`: the compression chart (matplotlib): size on disk against fidelity (`compression_chart`,
  `compression_points`, `place_labels`);
- `tables`: one renderer per result table, as HTML or text (`parity_table`, `compression_view`,
  `compression_table`, `table_html`, `Table`).
- `dataset`: a dataset check's results (matplotlib, PIL): the spread of the per-image figure and the worst
  images with their thumbnails (`dataset.histogram`, `dataset.worst_html`; not re-exported here).

Everything here imports with the core (no Jupyter); matplotlib only when a chart is drawn.
"""

from .chart import (
    FIDELITY,
    PSNR_CAP,
    CompressionPoint,
    compression_chart,
    compression_points,
    fidelity_figure,
    place_labels,
)
from .picture import overlay, pages, palette, side_by_side
from .tables import (
    FIGURES,
    Column,
    Row,
    Table,
    compression_table,
    compression_view,
    figure_text,
    measured_on,
    parity_table,
    table_html,
)

__all__ = ["FIDELITY", "FIGURES", "PSNR_CAP", "Column", "CompressionPoint", "Row", "Table", "compression_chart",
           "compression_points", "compression_table", "compression_view", "fidelity_figure", "figure_text",
           "measured_on", "overlay", "pages", "palette", "parity_table", "place_labels", "side_by_side", "table_html"]
