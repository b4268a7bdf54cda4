"""A dataset check's results drawn: how the per-image figure is spread, and the worst images.

`histogram(result)` draws the spread of each candidate's per-image figure as a PNG (matplotlib, imported when
drawn); `worst_html(result)` lists each candidate's worst images with a thumbnail and its flips, as HTML. Both
read a `workbench.dataset.DatasetResult`. No Jupyter here: the widget's Dataset tab shows these, and a script
can save them.
"""

from __future__ import annotations

import html
import io

import numpy as np


def histogram(result) -> bytes:
    """PNG: how the per-image figure is spread for each candidate. A classifier's (top-1 agrees or not) is one bar
    per candidate, its flips in red and counted; a continuous figure (PSNR, mIoU) is a histogram per candidate on
    shared bins, each in its own line style, so candidates that coincide stay distinguishable."""
    from matplotlib.figure import Figure

    from ..dataset.result import FIGURE_NAMES

    data = {}
    for cand in result.candidates:
        values = np.asarray([r["figure"] for r in result.rows[cand] if r["status"] == "ok" and r["figure"] is not None],
                            np.float64)
        if (values := values[np.isfinite(values)]).size:
            data[cand] = values
    name = FIGURE_NAMES[result.figure]
    if result.figure == "top1_agreement":
        fig = Figure(figsize=(6.4, 0.8 + 0.32 * max(1, len(data))), dpi=100)
        ax = fig.subplots()
        y = np.arange(len(data))
        agree = np.asarray([int((v >= 1).sum()) for v in data.values()])
        flips = np.asarray([int((v < 1).sum()) for v in data.values()])
        ax.barh(y, agree, color="#6aa87f")
        ax.barh(y, flips, left=agree, color="#d62728")
        for k, (a, f) in enumerate(zip(agree, flips)):
            ax.text(a + f, k, f"  {f} flipped of {a + f}", va="center", fontsize=7)
        ax.set_yticks(y, list(data))
        ax.invert_yaxis()
        ax.set_xlim(0, 1.3 * max(1, int((agree + flips).max(initial=1))))
        ax.set_xlabel("images: green, PyTorch's top-1 class; red, another (a flip)", fontsize=8)
    else:
        fig = Figure(figsize=(6.4, 2.2), dpi=100)
        ax = fig.subplots()
        if data:
            everything = np.concatenate(list(data.values()))
            lo, hi = float(everything.min()), float(everything.max())
            pad = 0.5 if hi - lo < 1e-9 else 0.0
            bins = np.linspace(lo - pad, hi + pad, 31)
            for k, (cand, values) in enumerate(data.items()):
                ax.hist(values, bins=bins, histtype="step", linewidth=1.6, linestyle=("-", "--", ":", "-.")[k % 4],
                        label=f"{cand} (worst {values.min():.3g})")
            ax.legend(fontsize=7, frameon=False)
        ax.set_xlabel(f"{name} per image", fontsize=8)
        ax.set_ylabel("images", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def worst_html(result, n: int = 5) -> str:
    """The worst images and the flips of each candidate, each with a thumbnail of the image."""
    import base64

    from PIL import Image

    from ..dataset.result import FIGURE_NAMES

    name = FIGURE_NAMES[result.figure]
    blocks = []
    for cand in result.candidates:
        kept = result.worst_outputs(cand)
        thumbs = {}
        if kept is not None:
            for image, pixels in zip(kept[0], kept[1]):
                im = Image.fromarray(np.clip(pixels, 0, 255).astype("uint8").transpose(1, 2, 0).squeeze())
                im.thumbnail((56, 56))
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format="JPEG", quality=80)
                thumbs[image] = base64.b64encode(buf.getvalue()).decode()
        cells = []
        for row in result.worst(n, cand):
            thumb = (f"<img src='data:image/jpeg;base64,{thumbs[row['image']]}' style='display:block'>"
                     if row["image"] in thumbs else "")
            value = row[result.figure]
            figure = "-" if value is None else f"{value:.3g}"
            flip = f"<br>{html.escape(row['pytorch'])} → {html.escape(row['format'])}" if "pytorch" in row and \
                row["pytorch"] != row["format"] else ""
            cells.append(f"<td style='padding:2px 6px;font-size:11px;vertical-align:top'>{thumb}"
                         f"{html.escape(row['image'])}<br>{name} {figure}{flip}</td>")
        flips = result.flips(cand)[:5]
        flip_text = "; ".join(f"{html.escape(f['pytorch'])} → {html.escape(f['format'])} ×{f['count']} "
                              f"({html.escape(', '.join(f['images'][:3]))}{'…' if len(f['images']) > 3 else ''})"
                              for f in flips)
        blocks.append(f"<div style='margin:4px 0'><b>{html.escape(cand)}</b>: worst images"
                      f"<table><tr>{''.join(cells)}</tr></table>"
                      + (f"<span style='font-size:11px'>flips: {flip_text}</span>" if flips else "") + "</div>")
    return "".join(blocks)
