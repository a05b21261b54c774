"""The explorer's HTML: the page frame (header, navigation, the one style sheet and script shipped
in assets/), tables whose columns sort and whose rows filter, and Markdown pages of the store
turned into HTML. Every page is a plain file that works from file:// with no network."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import markdown

ASSETS = ("site.css", "site.js")


def esc(text) -> str:
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Nav:
    """The header's links: (label, site path) pairs."""

    links: tuple[tuple[str, str], ...]


def page(title: str, body: str, path: str, nav: Nav) -> str:
    """A whole page at site path `path` (e.g. `runs/<key>.html`): links are made relative to it."""
    up = "../" * path.count("/")
    links = "".join(
        f'<a href="{up}{href}"{" class=here" if href == path else ""}>{esc(label)}</a>'
        for label, href in nav.links
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · LatentBench</title>"
        f'<link rel="stylesheet" href="{up}assets/site.css">'
        f'<script src="{up}assets/site.js"></script></head>\n'
        f'<body><header><a class="brand" href="{up}index.html">LatentBench</a>{links}</header>\n'
        f"<main>\n{body}\n</main></body></html>\n"
    )


def table(table_id: str, headers: list[str], rows: list[dict], numeric=(), attrs=None, filters="") -> str:
    """A sortable table; `rows`: {header: cell html}, plus "_attrs" (the row's data-* attributes,
    which the filters read) and "_sort" ({header: sort key} where the text does not sort right)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        data = "".join(f' data-{k}="{esc(v)}"' for k, v in row.get("_attrs", {}).items())
        cells = []
        for h in headers:
            sort = row.get("_sort", {}).get(h)
            sort_attr = f' data-sort="{esc(sort)}"' if sort is not None else ""
            cls = ' class="num"' if h in numeric else ""
            cells.append(f"<td{cls}{sort_attr}>{row.get(h, '')}</td>")
        body.append(f"<tr{data}>{''.join(cells)}</tr>")
    extra = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items())
    return (
        f'{filters}<div class="scroll"><table id="{table_id}" class="sortable"{extra}>'
        f"<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


def text_filter(table_id: str) -> str:
    return f'<label>filter <input type="search" data-table="{table_id}" placeholder="any text"></label>'


def select_filter(table_id: str, attr: str, label: str, options: list[tuple[str, str]], chosen="") -> str:
    """A <select> that shows only the rows whose data-`attr` holds the chosen value ("": all)."""
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(t)}</option>' for v, t in options
    )
    return f'<label>{esc(label)} <select data-table="{table_id}" data-attr="{attr}">{opts}</select></label>'


def controls(*parts: str) -> str:
    return '<div class="controls">' + "".join(parts) + "</div>"


_TABLE = re.compile(r"<table>")
_LINK = re.compile(r'(href|src)="([^"#:]+?)\.md(#[^"]*)?"')


def from_markdown(text: str, page_id: str) -> str:
    """A Markdown page of the store as HTML: tables sortable and filterable (a text filter above
    each), links to other pages pointed at their .html, `<details>` blocks' Markdown rendered."""
    text = re.sub(r"<details>", '<details markdown="1">', text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "md_in_html", "toc"])
    count = iter(range(1, 10_000))

    def sortable(_):
        table_id = f"{page_id}-t{next(count)}"
        return (
            controls(text_filter(table_id)) + f'<div class="scroll"><table id="{table_id}" class="sortable">'
        )

    body = _TABLE.sub(sortable, body)
    body = re.sub(r"</table>", "</table></div>", body)
    return _LINK.sub(lambda m: f'{m[1]}="{m[2]}.html{m[3] or ""}"', body)
