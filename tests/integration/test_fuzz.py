"""Schemathesis against both services' OpenAPI schemas: no server error, no mismatch.

The real processes, every check schemathesis has (server errors, status codes,
content types and response bodies as documented, valid input accepted and
invalid refused, stateful sequences through the inferred links), a bounded
number of examples per operation so that the run stays under a minute.
``FUZZ_EXAMPLES`` and ``FUZZ_SEED`` change the budget and the seed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import StartService
from tests.integration.conftest import Stack, start_stack

# Left out by dev.py test --quick (integration: test_services runs both services).
pytestmark = pytest.mark.slow

EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "15")
SEED = os.environ.get("FUZZ_SEED", "1")


@pytest.fixture
def fuzzed(start: StartService, tmp_path: Path) -> Stack:
    env = {"AWS_XRAY_SDK_ENABLED": "false"}  # development: /openapi.json is served
    return start_stack(start, tmp_path, backend_env=env, frontend_env=env)


@pytest.mark.parametrize("service", ["backend", "frontend"])
def test_fuzzing_finds_no_server_error_and_no_documentation_mismatch(
    fuzzed: Stack, service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = getattr(fuzzed, service)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{target.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--max-time",
            "40",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    generated = re.search(r"(\d+) generated", result.stdout)
    with capsys.disabled():
        print(f"\nschemathesis {service}: {generated.group(0) if generated else '?'}")
    assert result.returncode == 0, result.stdout[-6000:]
    assert generated is not None
    assert int(generated.group(1)) >= 200
    assert not [line for line in target.log_lines() if line["level"] in ("error", "critical")]
