"""The documentation points at things that exist: relative links and their anchors, configs/… files, scripts/…
paths and scripts.… names (README.md and every page under docs/)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CONFIG_PATH = re.compile(r"(?<![\w/.])configs/[\w./-]*[\w/]")
SCRIPTS_PATH = re.compile(r"(?<![\w/.])scripts/[\w./-]*[\w/]")
SCRIPTS_NAME = re.compile(r"(?<![\w/.])scripts(?:\.[A-Za-z_]\w*)+")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (outside code blocks; repeated headings get -1, -2 …)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"#{1,6} ", line):
            continue
        anchor = github_anchor(line.lstrip("#"))
        n = counts.get(anchor, 0)
        counts[anchor] = n + 1
        found.add(anchor if n == 0 else f"{anchor}-{n}")
    return found


@cache
def module_names(path: Path) -> set[str]:
    """Top-level names a module defines or imports (found without importing it: no optional dependency needed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                names.update(e.id for e in elements if isinstance(e, ast.Name))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def resolves(dotted: str) -> bool:
    """True when ``scripts.a.b.Name`` is a module, package or a name defined in one (attributes of a class too)."""
    parts = dotted.split(".")
    where = REPO
    for i, part in enumerate(parts):
        if (where / part).is_dir() and (where / part / "__init__.py").exists():
            where = where / part
            continue
        if (where / f"{part}.py").is_file():
            module, rest = where / f"{part}.py", parts[i + 1 :]
        else:
            module, rest = where / "__init__.py", parts[i:]
        return not rest or rest[0] in module_names(module)
    return True


def _prose(page: Path) -> str:
    return page.read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_exist(page):
    broken = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_configs_and_scripts_named_in_the_docs_exist(page):
    text = _prose(page)
    missing = [p for p in CONFIG_PATH.findall(text) + SCRIPTS_PATH.findall(text) if not (REPO / p).exists()]
    missing += [name for name in SCRIPTS_NAME.findall(text) if not resolves(name)]
    assert not missing, f"{page.relative_to(REPO)} names what does not exist: {sorted(set(missing))}"


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The link check itself: a wrong anchor, file and name are found; GitHub's anchors are reproduced."""
    assert github_anchor("ONNX Runtime on the CPU (`--backend auto`, the default)") == (
        "onnx-runtime-on-the-cpu---backend-auto-the-default"
    )
    assert github_anchor("Per-cell readout (cells.csv)") == "per-cell-readout-cellscsv"
    assert resolves("scripts.engine.mosaic.MosaicSegmenter")
    assert not resolves("scripts.engine.mosaic.NoSuchThing")
    assert not resolves("scripts.no_such_package")
    assert "inputs" in anchors(REPO / "docs" / "data_contract.md")
