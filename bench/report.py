"""Tables from a results document: plain text for the terminal, Markdown for the README."""

from __future__ import annotations

from .common import fmt_ms


def _cells(r: dict) -> list[str]:
    extra = []
    if "ratio_to_floor" in r:
        extra.append(f"{r['ratio_to_floor']:.2f}x floor")
    if "ratio_to_bare" in r:
        extra.append(f"{r['ratio_to_bare']:.2f}x bare")
    if "ratio_to_eager" in r:
        extra.append(f"{r['ratio_to_eager']:.2f}x eager")
    if "max_rss_mb" in r:
        extra.append(f"max RSS {r['max_rss_mb']:.0f} MB")
    if r.get("note"):
        extra.append(r["note"])
    runs = str(r["runs"]) if "runs" in r else "-"
    return [r["case"], r["what"], fmt_ms(r.get("median_ms")), runs, "; ".join(extra)]


def _target_cells(t: dict) -> list[str]:
    held = {True: "held", False: "MISSED", None: "not measured"}[t["held"]]
    value = t["measured"]
    measured = "-" if value is None else (f"{value:.0f}" if t["unit"] == "ms" else f"{value:.2f}")
    return [t["target"], f"{measured} {t['unit']}".strip(), f"{t['limit']:g} {t['unit']}", held, t.get("note", "")]


def text(results: dict, targets_only: bool = False) -> str:
    lines = []
    if not targets_only:
        for section in results["sections"].values():
            rows = [_cells(r) for r in section["rows"]]
            lines += _aligned(["case", "what", "median", "runs", ""], rows)
            lines.append("")
    if results.get("targets"):
        lines += _aligned(["target", "measured", "limit", "", "note"], [_target_cells(t) for t in results["targets"]])
    return "\n".join(lines)


def _aligned(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return out


def markdown(results: dict) -> str:
    m = results["machine"]
    p = results["packages"]
    start, end = m["load_average_at_start"][0], m.get("load_average_at_end", ["?"])[0]
    load = f"load average {start:.1f} at start, {end:.1f} at end"
    lines = [f"Measured {results['started']} on {m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']} "
             f"({load}); {', '.join(f'{k} {v}' for k, v in p.items() if v)}. Medians of `runs` runs; `make bench` took "
             f"{results['duration_s']:.0f} s.", ""]
    lines += ["| section | case | what | median | runs | |", "| --- | --- | --- | --- | --- | --- |"]
    for key, section in results["sections"].items():
        for r in section["rows"]:
            lines.append("| " + " | ".join([f"({key})"] + [c.replace("|", "\\|") for c in _cells(r)]) + " |")
    lines += ["", "| target | measured | limit | | note |", "| --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(_target_cells(t)) + " |" for t in results["targets"]]
    return "\n".join(lines)
