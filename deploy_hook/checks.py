"""The smoke checks: each page and API answers 200 with the content it should.

One list per service, read by the deploy hook (against a service's test
listener, before production traffic moves) and by ``sbcntrctl release smoke``
(against the public address, after a release): the two cannot drift apart.
The frontend's list goes through the whole chain (pages and the JSON API call
the backend); the backend's list is its own API, as the internal ALB serves it.

Standard library only: the hook's zip holds this folder and nothing else.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BODY_LIMIT = 1_000_000  # bytes read of an answer; the pages are a few KB


@dataclass(frozen=True)
class Check:
    """``GET path``: 200 holding ``contains`` (HTML) or the ``json_keys`` (a JSON object)."""

    path: str
    contains: str = ""
    json_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    check: Check
    status: int | None  # None: no HTTP answer at all
    problem: str = ""  # empty when the check passed

    @property
    def ok(self) -> bool:
        return not self.problem

    def line(self) -> str:
        """``GET /items: 200`` or ``GET /items: 500 (expected 200)``."""
        answer = "no answer" if self.status is None else str(self.status)
        return f"GET {self.check.path}: {answer}" + (f" ({self.problem})" if self.problem else "")


CHECKS: dict[str, tuple[Check, ...]] = {
    "frontend": (
        Check("/", contains="<h1>Hello world</h1>"),
        Check("/items", contains="<h1>Items"),
        Check("/notifications", contains="<h1>Notifications"),
        Check("/api/items", json_keys=("data", "total")),
        Check("/api/notifications/count", json_keys=("unread",)),
    ),
    "backend": (
        Check("/v1/helloworld", json_keys=("data",)),
        Check("/v1/items", json_keys=("data", "total")),
        Check("/v1/notifications/count", json_keys=("unread",)),
    ),
}


def _problem(check: Check, status: int, body: bytes) -> str:
    if status != 200:
        return "expected 200"
    text = body.decode("utf-8", errors="replace")
    if check.contains and check.contains not in text:
        return f"no {check.contains!r} in the answer"
    if check.json_keys:
        try:
            document = json.loads(text)
        except ValueError:
            return "not JSON"
        if not isinstance(document, dict):
            return "not a JSON object"
        missing = [key for key in check.json_keys if key not in document]
        if missing:
            return f"JSON without {', '.join(missing)}"
    return ""


def run_one(base_url: str, check: Check, timeout: float, headers: dict[str, str]) -> Result:
    """One check; every failure (refused, timeout, wrong answer) is a Result, never raised."""
    url = base_url.rstrip("/") + check.path
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return Result(check, None, f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked above
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as answer:
            status, body = answer.status, answer.read(BODY_LIMIT)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(BODY_LIMIT)
    except (OSError, ValueError) as exc:  # URLError, refused, timeout, bad URL
        reason = getattr(exc, "reason", exc)
        return Result(check, None, f"{type(exc).__name__}: {reason}")
    return Result(check, status, _problem(check, status, body))


def run(
    base_url: str,
    checks: Iterable[Check],
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> list[Result]:
    """Every check against ``base_url``, in order (all run, so a report names every failure)."""
    return [run_one(base_url, check, timeout, headers or {}) for check in checks]


def failures(results: Sequence[Result]) -> list[Result]:
    return [r for r in results if not r.ok]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to check (a 3xx is not 200), not one to follow."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
