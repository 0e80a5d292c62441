"""A small document model rendered to self-contained HTML (images inline as base64) and Markdown.

The Markdown links the same images as PNG files in ``<stem>_files/`` beside it.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.errors import ReportWriteError


@dataclass
class Block:
    kind: str  # h2 | h3 | p | table | image | list
    text: str = ""
    anchor: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    png: bytes = b""
    name: str = ""
    items: list[str] = field(default_factory=list)


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def section(self, anchor: str, text: str) -> None:
        self.blocks.append(Block("h2", text=text, anchor=anchor))

    def subsection(self, text: str) -> None:
        self.blocks.append(Block("h3", text=text))

    def para(self, text: str) -> None:
        self.blocks.append(Block("p", text=text))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(Block("table", headers=headers, rows=[[str(c) for c in r] for r in rows]))

    def image(self, name: str, png: bytes, alt: str) -> None:
        self.blocks.append(Block("image", name=name, png=png, text=alt))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(Block("list", items=items))

    def images(self) -> list[Block]:
        return [b for b in self.blocks if b.kind == "image"]


# --- formatting ----------------------------------------------------------------------------------
def ts_text(ns: int | None) -> str:
    """Nanoseconds since the epoch as UTC text with milliseconds."""
    if ns is None:
        return "-"
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC) + dt.timedelta(
        microseconds=(ns % 1_000_000_000) // 1000
    )
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def num(v: float | int | None, digits: int = 2, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return f"{v:+,.{digits}f}" if signed else f"{v:,.{digits}f}"


def pct(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v * 100:.{digits}f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# --- rendering -----------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.6em 0}
li.flag{color:#b00;font-weight:bold}p.note{color:#555;font-size:.9em}
"""


def to_html(doc: Document) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for b in doc.blocks:
        if b.kind == "h2":
            out.append(f'<h2 id="{html.escape(b.anchor)}">{html.escape(b.text)}</h2>')
        elif b.kind == "h3":
            out.append(f"<h3>{html.escape(b.text)}</h3>")
        elif b.kind == "p":
            out.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "list":
            items = []
            for it in b.items:
                cls = ' class="flag"' if it.startswith("FLAGGED") else ""
                items.append(f"<li{cls}>{html.escape(it)}</li>")
            out.append("<ul>" + "".join(items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "image":
            data = base64.b64encode(b.png).decode("ascii")
            out.append(f'<img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document, files_dir: str) -> str:
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if b.kind == "h2":
            out += [f"## {b.text}", ""]
        elif b.kind == "h3":
            out += [f"### {b.text}", ""]
        elif b.kind == "p":
            out += [b.text, ""]
        elif b.kind == "list":
            out += [f"- {it}" for it in b.items] + [""]
        elif b.kind == "table":
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "|".join("---" for _ in b.headers) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("")
        elif b.kind == "image":
            out += [f"![{b.text}]({files_dir}/{b.name}.png)", ""]
    return "\n".join(out)


def write_document(doc: Document, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``<stem>.html``, ``<stem>.md`` and the PNGs the Markdown links; return the two report paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = out / f"{stem}_files"
        if doc.images():
            files.mkdir(exist_ok=True)
            for b in doc.images():
                (files / f"{b.name}.png").write_bytes(b.png)
        html_path, md_path = out / f"{stem}.html", out / f"{stem}.md"
        html_path.write_text(to_html(doc), encoding="utf-8")
        md_path.write_text(to_markdown(doc, files.name), encoding="utf-8")
    except OSError as exc:
        raise ReportWriteError(str(out), str(exc.strerror or exc)) from None
    return [html_path, md_path]
