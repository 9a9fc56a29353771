"""HTML form bodies read as UTF-8 text, refused when they are not.

Starlette decodes a urlencoded form leniently: an invalid UTF-8 sequence
becomes U+FFFD, and would be stored as such. :func:`read_form` reads the
body itself and answers a field that is not UTF-8 with the 422 of any bad
input, naming the field (:func:`servicekit.errors.validation_error`).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.exceptions import RequestValidationError

_URLENCODED = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> dict[str, str]:
    """The text fields of a form (the last value of a repeated name wins).

    Raises :class:`RequestValidationError` naming each field whose name or
    value is not UTF-8. Other form encodings (``multipart/form-data``) are
    read by Starlette, their text fields kept.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != _URLENCODED:
        form = await request.form()
        return {name: value for name, value in form.items() if isinstance(value, str)}
    fields: dict[str, str] = {}
    errors = []
    for pair in (await request.body()).split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name_bytes = unquote_to_bytes(raw_name.replace(b"+", b" "))
        value_bytes = unquote_to_bytes(raw_value.replace(b"+", b" "))
        name = name_bytes.decode("utf-8", "replace")
        try:
            fields[name_bytes.decode("utf-8")] = value_bytes.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(
                {"loc": ("body", name), "msg": "not valid UTF-8 text", "type": "utf8_invalid"}
            )
    if errors:
        raise RequestValidationError(errors)
    return fields
