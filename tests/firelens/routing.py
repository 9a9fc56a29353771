"""The routing rules of the FireLens configuration, evaluated in Python.

This checks what the configuration says (its parser, grep, rewrite_tag and
Match rules, read from the files), not Fluent Bit itself: the filters are
applied with Fluent Bit's documented semantics to records shaped as FireLens
delivers them (``{"log": <line>, "container_name": ..., ...}``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.firelens.classic import Section, expand

# Fluent Bit time format letters and their Python equivalents.
_TIME_LETTERS = {"%L": "%f"}


@dataclass
class Delivery:
    output: str  # plugin name: s3 or cloudwatch_logs
    tag: str
    record: dict[str, Any]
    destination: str  # S3 key prefix or log group


def _matches(section: Section, tag: str) -> bool:
    pattern = section.get("match_regex")
    if pattern is not None:
        return re.search(pattern, tag) is not None
    wildcard = section.get("match") or ""
    return re.fullmatch(re.escape(wildcard).replace(r"\*", ".*"), tag) is not None


def python_time_format(fluent_bit_format: str) -> str:
    for letter, python in _TIME_LETTERS.items():
        fluent_bit_format = fluent_bit_format.replace(letter, python)
    return fluent_bit_format


class Router:
    def __init__(self, sections: list[Section], env: dict[str, str]) -> None:
        self.sections = sections
        self.env = env
        self.parsers = {s.get("name"): s for s in sections if s.kind == "PARSER"}

    def _parse(self, section: Section, record: dict[str, Any]) -> dict[str, Any]:
        key = section.get("key_name") or "log"
        parser = self.parsers[section.get("parser")]
        assert parser.get("format") == "json"
        try:
            parsed = json.loads(record.get(key, ""))
        except (TypeError, ValueError):
            return record  # not JSON: the record passes unchanged
        if not isinstance(parsed, dict):
            return record
        time_key = parser.get("time_key")
        if time_key and time_key in parsed:
            # Fluent Bit drops records whose time does not parse with the format.
            datetime.strptime(parsed[time_key], python_time_format(parser.get("time_format") or ""))
            if (parser.get("time_keep") or "off").lower() != "on":
                parsed.pop(time_key)
        if (section.get("reserve_data") or "off").lower() == "on":
            kept = {k: v for k, v in record.items() if k != key}
            return {**kept, **parsed}
        return parsed

    def _rewrite_copies(self, section: Section, tag: str, record: dict[str, Any]) -> list[str]:
        for rule in section.all("rule"):
            key, pattern, new_tag, _keep = expand(rule, self.env).split()
            name = key.removeprefix("$")
            if name in record and re.search(pattern, str(record[name])):
                return [new_tag.replace("$TAG", tag)]
        return []

    def route(self, tag: str, record: dict[str, Any]) -> list[Delivery]:
        """Run one record through the filters; return where the outputs send it."""
        streams = [(tag, dict(record))]
        delivered: list[Delivery] = []
        while streams:
            current_tag, current = streams.pop(0)
            dropped = False
            for section in self.sections:
                if section.kind != "FILTER" or not _matches(section, current_tag):
                    continue
                if section.plugin == "parser":
                    current = self._parse(section, current)
                elif section.plugin == "grep":
                    for rule in section.all("exclude"):
                        key, pattern = rule.split(None, 1)
                        if key in current and re.search(pattern, str(current[key])):
                            dropped = True
                elif section.plugin == "rewrite_tag":
                    streams += [
                        (t, dict(current))
                        for t in self._rewrite_copies(section, current_tag, current)
                    ]
                if dropped:
                    break
            if dropped:
                continue
            for section in self.sections:
                if section.kind == "OUTPUT" and _matches(section, current_tag):
                    delivered.append(
                        Delivery(
                            section.plugin,
                            current_tag,
                            current,
                            self._destination(section, current_tag, current),
                        )
                    )
        return delivered

    def _destination(self, section: Section, tag: str, record: dict[str, Any]) -> str:
        if section.plugin == "s3":
            key_format = expand(section.get("s3_key_format") or "", self.env)
            delimiters = section.get("s3_key_format_tag_delimiters") or "."
            parts = re.split("[" + re.escape(delimiters) + "]", tag)
            key = re.sub(r"\$TAG\[(\d+)\]", lambda m: parts[int(m.group(1))], key_format)
            return key.split("/%Y")[0]
        template = section.get("log_group_template")
        if template:
            expanded = expand(template, self.env)
            names = re.findall(r"\$([A-Za-z_]+)", expanded)
            if all(name in record for name in names):
                return re.sub(r"\$([A-Za-z_]+)", lambda m: str(record[m.group(1)]), expanded)
        return expand(section.get("log_group_name") or "", self.env)
