"""The options of ``locust -f loadtest/``: documented, refused when bad, and shown in the web UI.

Locust runs in processes of its own here: importing it monkey-patches the
interpreter (gevent).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, free_port

LOCUST = str(Path(sys.executable).parent / "locust")
README = (ROOT / "loadtest" / "README.md").read_text()

OWN_OPTIONS = """
import sys
sys.path.insert(0, sys.argv[1])
import users  # adds the options
from locust.argument_parser import default_args_dict, get_parser
parser = get_parser()
own = set(vars(parser.parse_args([]))) - set(default_args_dict())
print(" ".join(sorted(a.option_strings[0] for a in parser._actions if a.dest in own)))
"""


def test_the_readme_lists_every_option_the_locustfile_adds() -> None:
    """Locust prints --help before it loads a locustfile, so the README is the list."""
    result = subprocess.run(
        [sys.executable, "-c", OWN_OPTIONS, str(ROOT / "loadtest")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    options = set(result.stdout.split())
    assert "--target-rps" in options
    documented = set(re.findall(r"`(--[a-z0-9-]+)`", README))
    assert options - documented == set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-id", "my run"], "--run-id 'my run'"),
        (["--shape", "spike", "--shape-duration", "30", "--spike-seconds", "30"], "no baseline"),
        (["--user-rps", "0"], "--user-rps must be greater than 0"),
        (["--sample-pids", "frontend=1 backend=2"], "is not name=PID"),
    ],
)
def test_bad_options_stop_locust_before_any_request(args: list[str], message: str) -> None:
    assert_refused(args, message)


def test_a_run_id_used_before_is_refused_before_any_request(tmp_path: Path) -> None:
    # Its reports would be overwritten, and its rows and log lines audited as one run.
    (tmp_path / "summary.json").write_text("{}")
    assert_refused(
        ["--run-id", "steady-1", "--report-dir", str(tmp_path)],
        f"{tmp_path}/ already holds a run's reports",
    )
    assert (tmp_path / "summary.json").read_text() == "{}"


def assert_refused(args: list[str], message: str) -> None:
    result = subprocess.run(
        [LOCUST, "-f", str(ROOT / "loadtest"), "--headless", "--host", "http://127.0.0.1:9", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr


def camel(name: str) -> str:
    """How the web UI renames an option it receives (locust/webui, string utilities)."""
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def snake(name: str) -> str:
    """How the web UI renames an option it sends back."""
    if name[0] == name[0].upper():
        return name
    return re.sub(r"([a-z0-9])([A-Z0-9])", r"\1_\2", name).lower()


def test_the_web_ui_listens_where_told_with_the_host_and_readable_options(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [LOCUST, "-f", str(ROOT / "loadtest"), "--web-host", "127.0.0.1", "--web-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the web UI did not answer"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    found = re.search(r"templateArgs = (\{.*?\});?\s*</script>", page, re.DOTALL)
    assert found, page[:2000]
    args = json.loads(found.group(1))
    assert args["host"] == "http://127.0.0.1:8080"  # what `dev.py up` serves
    options = args["extra_options"]
    assert {"shape", "target_rps", "shape_duration", "run_id"} <= set(options)
    for name, option in options.items():
        assert option["help_text"], f"{name} has no label text"
        assert snake(camel(name)) == name, f"the web UI would send {name} back renamed"
    assert "max_p95_ms" not in options
    assert not (tmp_path / "reports").exists()  # closed before any run: no empty report
