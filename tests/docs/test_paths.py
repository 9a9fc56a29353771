"""The docs name source files by the paths they have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support import ROOT

# `some/dir/file.py`: a path in backticks with a folder and a file extension.
PATH = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|ya?ml|json|toml|md|conf|sh|cfg))`")
DOCS = sorted(
    [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md")],
)


def named_paths(markdown: Path) -> set[str]:
    return set(PATH.findall(markdown.read_text(encoding="utf-8")))


def generated(name: str) -> bool:
    """A file the tools write where git ignores it (``reports/...``), not a source file."""
    ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, check=False)
    return ignored.returncode == 0


def test_every_path_the_docs_name_exists() -> None:
    missing = [
        f"{doc.relative_to(ROOT)}: {name}"
        for doc in DOCS
        for name in sorted(named_paths(doc))
        if not (ROOT / name).exists() and not (doc.parent / name).exists()
    ]
    assert [entry for entry in missing if not generated(entry.split(": ", 1)[1])] == []


def test_the_pattern_finds_a_wrong_path(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("see `servicekit/identity.py` and `servicekit/src/servicekit/identity.py`")
    assert named_paths(doc) == {"servicekit/identity.py", "servicekit/src/servicekit/identity.py"}
    assert not (ROOT / "servicekit/identity.py").exists()
    assert (ROOT / "servicekit/src/servicekit/identity.py").exists()
    assert not generated("servicekit/identity.py")
    assert generated("reports/bench/performance.md")
