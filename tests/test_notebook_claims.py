"""What the committed notebooks claim and show, scanned as a reader meets them (issue 31).

The committed outputs come from smoke runs on the drawn demo faces: nothing in them may call a score
comparable to papers or published results. Tables must fit a page (at most 12 columns), and nbval's
markers are cell tags, not comments a reader has to read past.
"""

import html.parser
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_COLUMNS = 12
# A claim of comparability with the literature; "comparable with nothing published" denies one.
COMPARABILITY_CLAIM = re.compile(r"comparable to (papers|published)|comparable (to|with) (published|the literature)",
                                 re.IGNORECASE)


class _TableWidths(html.parser.HTMLParser):
    """The number of cells in each row of every HTML table."""

    def __init__(self):
        super().__init__()
        self.widths, self._cells = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._cells = 0
        elif tag in ("td", "th") and self._cells is not None:
            self._cells += int(dict(attrs).get("colspan") or 1)

    def handle_endtag(self, tag):
        if tag == "tr" and self._cells is not None:
            self.widths.append(self._cells)
            self._cells = None


def table_widths(markup: str) -> list[int]:
    parser = _TableWidths()
    parser.feed(markup)
    markdown_rows = [line for line in markup.splitlines() if line.strip().startswith("|")]
    return parser.widths + [line.strip().strip("|").count("|") + 1 for line in markdown_rows]


def _texts(path):
    """(cell index, output text) for every output of the notebook, all text-like MIME types joined."""
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        for output in cell.get("outputs", []):
            parts = [output.get("text", "")] + [value for key, value in output.get("data", {}).items()
                                                if key.startswith("text/")]
            yield index, "\n".join(part if isinstance(part, str) else "".join(part) for part in parts)


def test_table_widths_count_html_and_markdown_cells():
    assert table_widths("<table><tr><th></th><th>a</th></tr><tr><td colspan='3'>x</td></tr></table>") == [2, 3]
    assert table_widths("| a | b | c |\n| --- | --- | --- |") == [3, 3]


def test_the_claim_pattern_catches_claims_and_passes_denials():
    assert COMPARABILITY_CLAIM.search("the number comparable to published results")
    assert COMPARABILITY_CLAIM.search('"comparable to papers": yes')
    assert not COMPARABILITY_CLAIM.search("they are comparable with nothing published")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_demo_outputs_claim_no_comparability_with_papers(path):
    claims = [(index, match.group(0)) for index, text in _texts(path) for match in COMPARABILITY_CLAIM.finditer(text)]
    assert claims == [], f"{path.name}: outputs from demo data claim comparability: {claims}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_table_is_wider_than_a_page(path):
    wide = [(index, width) for index, text in _texts(path) for width in table_widths(text) if width > MAX_COLUMNS]
    sources = [(index, width) for index, cell in enumerate(nbformat.read(path, as_version=4).cells)
               if cell.cell_type == "markdown" for width in table_widths(cell.source) if width > MAX_COLUMNS]
    assert wide + sources == [], f"{path.name}: (cell, columns) of tables over {MAX_COLUMNS} columns"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_nbval_markers_are_tags_not_comments(path):
    cells = nbformat.read(path, as_version=4).cells
    assert not [index for index, cell in enumerate(cells) if "NBVAL_" in cell.source]
    tagged = [cell for cell in cells if "nbval-check-output" in cell.metadata.get("tags", [])]
    assert tagged, f"{path.name}: no cell's output is checked by nbval"
