"""Where each word of a PDF lies (``pdftotext -bbox``), to find text that overlaps other text."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Word:
    page: int
    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Word, slack: float = 0.3) -> bool:
        """Whether the two words sit on one line (the same baseline, as the tick labels of an axis do) and run
        into each other by more than ``slack`` points (touching is fine).

        pdftotext's boxes are a line's full height, so words of neighbouring lines always "overlap"
        vertically; only words of one line are compared."""
        same_line = abs(self.y1 - other.y1) < 0.5 and abs(self.y0 - other.y0) < 0.5
        return (self.page == other.page and same_line
                and min(self.x1, other.x1) - max(self.x0, other.x0) > slack)


def words(pdf: Path) -> list[Word]:
    xhtml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout
    root = ET.fromstring(xhtml)
    found: list[Word] = []
    for number, page in enumerate(root.iter("{http://www.w3.org/1999/xhtml}page"), 1):
        for w in page.iter("{http://www.w3.org/1999/xhtml}word"):
            found.append(Word(number, w.text or "", float(w.get("xMin", 0)), float(w.get("yMin", 0)),
                              float(w.get("xMax", 0)), float(w.get("yMax", 0))))
    return found


def overlapping(pdf: Path) -> list[tuple[Word, Word]]:
    """Pairs of words whose boxes overlap (labels that run together)."""
    found = words(pdf)
    pairs = []
    for i, a in enumerate(found):
        for b in found[i + 1:]:
            if b.page != a.page:
                break
            if a.overlaps(b):
                pairs.append((a, b))
    return pairs
