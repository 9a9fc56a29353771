"""Reading ``X-Amzn-Trace-Id``: the one-match reading says what the general reading says.

:func:`servicekit.trace_header.parse_trace_header` reads a header written as
X-Ray writes it (``Root=...;Parent=...;Sampled=...``) with one regular
expression, and any other with the general reading (fields in any order and
case, spaces, other fields). Both must give the same answer for every header;
the header's format is X-Ray's:
https://docs.aws.amazon.com/xray/latest/devguide/xray-concepts.html#xray-concepts-tracingheader
"""

from __future__ import annotations

import pytest
from aws_xray_sdk.core.models.trace_header import TraceHeader as SdkTraceHeader
from hypothesis import given, settings
from hypothesis import strategies as st

from servicekit import trace_header
from servicekit.trace_header import NO_HEADER, TraceHeader, parse_trace_header

HEX = "0123456789abcdef"
ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


def hex_text(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=HEX, min_size=size, max_size=size)


roots = st.one_of(
    st.builds(lambda epoch, rest: f"1-{epoch}-{rest}", hex_text(8), hex_text(24)),
    st.just("1-00000000-000000000000000000000000"),  # no trace
    st.just(ROOT.upper()),  # not X-Ray's hex
    st.just(ROOT + "0"),
    st.text(max_size=40),
)
parents = st.one_of(
    hex_text(16), st.just(PARENT.upper()), st.just(PARENT[:-1]), st.text(max_size=20)
)
decisions = st.sampled_from(["0", "1", "?", "", "2", "true"])


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """Headers near X-Ray's form: its fields, in its order or not, with its spelling or not."""
    fields = [("Root", draw(roots))]
    if draw(st.booleans()):
        fields.append(("Parent", draw(parents)))
    if draw(st.booleans()):
        fields.append(("Sampled", draw(decisions)))
    if draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), ("Self", f"1-{'0' * 8}-{'1' * 24}"))
    if draw(st.booleans()):
        fields = draw(st.permutations(fields))
    key_case = draw(st.sampled_from([str, str.lower, str.upper]))
    spaces = draw(st.sampled_from(["", " "]))
    text = ";".join(f"{spaces}{key_case(key)}={value}" for key, value in fields)
    text += draw(st.sampled_from(["", ";", "\n", " "]))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def usual_form(draw: st.DrawFn) -> bytes:
    """X-Ray's order and spelling, with values right or nearly right."""
    text = f"Root={draw(roots)}"
    if draw(st.booleans()):
        text += f";Parent={draw(parents)}"
    if draw(st.booleans()):
        text += f";Sampled={draw(decisions)}"
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=3000)
@given(raw=st.one_of(usual_form(), headers(), st.binary(max_size=80)), trust=st.booleans())
def test_the_usual_form_is_read_as_the_general_reading_reads_it(raw: bytes, trust: bool) -> None:
    assert parse_trace_header(raw, trust_sampling=trust) == trace_header._read_fields(
        raw, trust_sampling=trust
    )


@settings(max_examples=500)
@given(root=hex_text(24), epoch=hex_text(8), parent=hex_text(16), decision=decisions)
def test_the_usual_form_is_read_as_the_x_ray_sdk_reads_it(
    root: str, epoch: str, parent: str, decision: str
) -> None:
    text = f"Root=1-{epoch}-{root};Parent={parent}"
    if decision in ("0", "1", "?"):
        text += f";Sampled={decision}"
    ours = parse_trace_header(text.encode(), trust_sampling=True)
    sdk = SdkTraceHeader.from_header_str(text)
    if epoch == "0" * 8 and root == "0" * 24:
        assert ours == NO_HEADER
        return
    assert (ours.root, ours.parent) == (sdk.root, sdk.parent)
    assert ours.sampled == sdk.sampled


@pytest.mark.parametrize(
    ("raw", "trusted", "untrusted"),
    [
        (
            f"Root={ROOT};Parent={PARENT};Sampled=1",
            TraceHeader(ROOT, PARENT, 1),
            TraceHeader(ROOT, PARENT, None),
        ),
        (f"Root={ROOT};Sampled=0", TraceHeader(ROOT, None, 0), TraceHeader(ROOT, None, None)),
        (f"Root={ROOT};Sampled=?", TraceHeader(ROOT, None, "?"), TraceHeader(ROOT, None, "?")),
        (f"Root={ROOT}", TraceHeader(ROOT), TraceHeader(ROOT)),
        (  # the ALB's own field first: the general reading
            f"Self=1-67891234-12456789abcdef012345678;Root={ROOT};Sampled=1",
            TraceHeader(ROOT, None, 1),
            TraceHeader(ROOT, None, None),
        ),
        (f"root = {ROOT} ; sampled = 1", TraceHeader(ROOT, None, 1), TraceHeader(ROOT)),
        (f"Root={ROOT};Parent={PARENT.upper()}", TraceHeader(ROOT), TraceHeader(ROOT)),
        ("Root=1-00000000-000000000000000000000000;Sampled=1", NO_HEADER, NO_HEADER),
        (f"Root={ROOT};Sampled=1" + " " * 600, NO_HEADER, NO_HEADER),  # too long: ignored
    ],
)
def test_what_a_header_says(raw: str, trusted: TraceHeader, untrusted: TraceHeader) -> None:
    assert parse_trace_header(raw.encode(), trust_sampling=True) == trusted
    assert parse_trace_header(raw.encode(), trust_sampling=False) == untrusted
