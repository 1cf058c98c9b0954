"""Reading a report page back as a user's browser would get it: the text of every table
cell, all the text, and how many plot marks (bars, points) it draws."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path


class ReportPage(HTMLParser):
    """The text of every table cell and the number of plot marks in a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.text: list[str] = []
        self.marks = 0
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")
        if dict(attrs).get("class") == "datum":
            self.marks += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_cell:
            self.cells[-1] += data


def opened(page: Path) -> tuple[ReportPage, dict]:
    """The parsed page and the JSON written beside it."""
    parsed = ReportPage()
    parsed.feed(page.read_text(encoding="utf-8"))
    return parsed, json.loads(page.with_suffix(".json").read_text(encoding="utf-8"))
