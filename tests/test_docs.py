"""The guides in docs/: every ```python block of a Markdown file runs, the blocks of one file in
order in one namespace, as a reader would paste them (so examples stay complete and true)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("**/*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(page: Path) -> list[tuple[int, str]]:
    """Each python block with the line of the page it starts on."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in BLOCK.finditer(text)
    ]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_every_python_block_runs(page: Path) -> None:
    found = blocks(page)
    if not found:
        pytest.skip(f"{page.name} has no python blocks")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    printed = io.StringIO()
    for line, source in found:
        # blank lines keep the tracebacks' line numbers those of the page
        code = compile("\n" * (line - 1) + source, str(page), "exec")
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)
    assert printed.getvalue(), f"{page.name}: the examples should print what they show"


def test_the_recipes_are_there() -> None:
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    assert {"recipes/bucketing.md", "recipes/mixing.md"} <= names
