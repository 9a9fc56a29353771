"""A reader of Fluent Bit's classic configuration format, for the FireLens tests.

Sections (``[SERVICE]``, ``[INPUT]``, ``[FILTER]``, ``[OUTPUT]``, ``[PARSER]``)
hold ``key value`` lines, indented; ``#`` starts a comment line;
``@INCLUDE path`` pulls in another file. Keys are case-insensitive and a key
may repeat (``Rule`` of rewrite_tag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_SECTION = re.compile(r"^\[([A-Z_]+)\]$")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Section:
    kind: str
    source: str
    entries: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        values = self.all(key)
        return values[-1] if values else None

    def all(self, key: str) -> list[str]:
        return [value for k, value in self.entries if k == key.lower()]

    @property
    def plugin(self) -> str:
        return (self.get("name") or self.kind).lower()


def parse(path: Path, image_paths: dict[str, Path]) -> list[Section]:
    """All sections of ``path`` and of what it includes, in order.

    ``image_paths`` maps a path inside the image (as ``@INCLUDE`` names it)
    to the file in this repository.
    """
    sections: list[Section] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("@INCLUDE"):
            target = line.split(None, 1)[1]
            assert target in image_paths, f"{path.name}:{number}: unknown include {target}"
            included = image_paths[target]
            assert included.exists(), f"{path.name}:{number}: {included} does not exist"
            sections += parse(included, image_paths)
            continue
        header = _SECTION.match(line)
        if header:
            sections.append(Section(header.group(1), f"{path.name}:{number}"))
            continue
        assert raw.startswith((" ", "\t")), f"{path.name}:{number}: entries are indented"
        assert sections, f"{path.name}:{number}: entry outside a section"
        key, _, value = line.partition(" ")
        assert value.strip(), f"{path.name}:{number}: {key} has no value"
        sections[-1].entries.append((key.lower(), value.strip()))
    return sections


def variables(sections: list[Section]) -> set[str]:
    """Every ``${VAR}`` the configuration reads from the environment."""
    return {m for s in sections for _, v in s.entries for m in _VARIABLE.findall(v)}


def expand(value: str, env: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: env[m.group(1)], value)
