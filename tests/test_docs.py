"""The documentation site: every ```python block of docs/ runs, and the site builds strictly.

The ```python blocks of one page run in order in one namespace (a page's later examples use its
earlier ones' names), in a child process with a hard timeout and a fresh temporary working
directory, so a page may write files and start workers without touching the repository. A
traceback names the page and its line. Snippets that cannot run here (a torchrun job, a real
bucket) are fenced as ```text or ```sh, never as ```python.

README.md is not run: its snippets are fragments (``load(path)``, ``dataset``, ``accelerator``
and ``checkpoint`` are left to the reader), and the guides in docs/ carry the runnable versions.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ladle

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGE_TIMEOUT = 60  # seconds per page; the pages together take a few seconds
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# optional packages a page may use, and how to spot that it does
OPTIONAL = {
    "torch": re.compile(r"^\s*(import|from) torch\b|\bladle\.torch\b", re.MULTILINE),
    "PIL": re.compile(r"^\s*(import|from) PIL\b", re.MULTILINE),
    "fsspec": re.compile(r"memory://"),
}

# Runs in the child: executes each block in __main__'s namespace, so that classes a page
# defines live in __main__ and pickle by reference for worker processes, as a script's do.
# warnings are errors, as in the test suite (the 2-core machine's worker count aside)
WARNINGS = ["-W", "error", "-W", "ignore:This DataLoader will create:UserWarning"]
RUNNER = """
import json, sys
blocks = json.loads(sys.stdin.read())
namespace = sys.modules["__main__"].__dict__
for path, line, source in blocks:
    exec(compile("\\n" * (line - 1) + source, path, "exec"), namespace)
"""


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file: (line of the block's first code line, code)."""
    blocks: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], match["indent"]
        words = match["info"].strip().split()
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i >= len(lines):
            raise AssertionError(f"{path}: a fence opened before line {len(lines)} never closes")
        if words and words[0] == "python":
            blocks.append((i - len(body) + 1, textwrap.dedent("\n".join(body))))
        i += 1
    return blocks


PAGES = sorted(path for path in DOCS.rglob("*.md") if python_blocks(path))


def _missing(code: str) -> list[str]:
    return [
        name
        for name, pattern in OPTIONAL.items()
        if pattern.search(code) and importlib.util.find_spec(name) is None
    ]


def run_page(path: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    relative = str(path.relative_to(ROOT))
    blocks = [[relative, line, code] for line, code in python_blocks(path)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    env.pop("PYTHONWARNINGS", None)
    child = subprocess.Popen(
        [sys.executable, *WARNINGS, "-c", RUNNER],
        cwd=workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its workers share its process group: one kill ends them all
    )
    try:
        stdout, stderr = child.communicate(json.dumps(blocks), timeout=PAGE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        stdout, stderr = child.communicate()
        pytest.fail(f"{relative} ran past {PAGE_TIMEOUT} s\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


@pytest.mark.parametrize("path", PAGES, ids=lambda path: str(path.relative_to(DOCS)))
def test_page_examples_run(path: Path, tmp_path: Path) -> None:
    code = "\n".join(code for _, code in python_blocks(path))
    for _, block in python_blocks(path):
        ast.parse(block)  # a syntax error names the block before anything runs
    missing = _missing(code)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)}, which is not installed")
    result = run_page(path, tmp_path)
    assert result.returncode == 0, (
        f"{path.relative_to(ROOT)} failed (exit {result.returncode}):\n"
        f"{result.stdout}\n{result.stderr}"
    )
    assert result.stdout.strip(), f"{path.name}'s examples print nothing: show the reader a result"
    assert not result.stderr.strip(), f"{path.name}'s examples wrote to stderr:\n{result.stderr}"


def test_pages_with_examples_are_found() -> None:
    names = {str(path.relative_to(DOCS)) for path in PAGES}
    assert {"getting-started.md", "determinism.md", "pitfalls.md"} <= names, names


def test_block_collection(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\nx = 1\n```\n\n```text\nnot run\n```\n\n"
        "- item\n\n    ```python\n    y = x\n    ```\n\n````python\n```inner\n````\n",
        encoding="utf-8",
    )
    assert python_blocks(page) == [(4, "x = 1"), (14, "y = x"), (18, "```inner")]


def test_api_reference_covers_the_public_names() -> None:
    reference = "\n".join(
        path.read_text(encoding="utf-8") for path in sorted((DOCS / "api").glob("*.md"))
    )
    documented = set(re.findall(r"^::: ladle\.(\w+)\s*$", reference, re.MULTILINE))
    documented |= set(re.findall(r"^\s+- (\w+)\s*$", reference, re.MULTILINE))
    modules = {"formats", "testing", "transforms"}  # each has a page of its own
    public = set(ladle.__all__) - {"__version__"} - modules
    assert not public - documented, f"not in docs/api/: {sorted(public - documented)}"
    for module in modules:
        assert f"::: ladle.{module}" in reference, module


def test_site_builds_strictly(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]' (make test does)")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    config, site = str(ROOT / "mkdocs.yml"), str(tmp_path / "site")
    # no --quiet: it hides the warnings that --strict counts, and the build then passes
    command = ["mkdocs", "build", "--strict", "--config-file", config, "--site-dir", site]
    result = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    )
    assert (tmp_path / "site" / "api" / "loader" / "index.html").is_file()
    html = (tmp_path / "site" / "api" / "loader" / "index.html").read_text(encoding="utf-8")
    assert "state_dict" in html, "the API reference lost DataLoader's members"
