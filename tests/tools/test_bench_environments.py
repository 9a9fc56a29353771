"""The bench's service environments hold what the images hold, no more."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sbcntrctl.bench import environments
from tests.support import ROOT


def test_each_service_runs_from_its_own_locked_dependencies(tmp_path: Path) -> None:
    pythons = environments.service_pythons(ROOT, tmp_path / "environments")
    probe = (
        "import importlib.util as u, sys; "
        "print(*(u.find_spec(m) is not None for m in sys.argv[1:]))"
    )
    for service, other in (("backend", "frontend"), ("frontend", "backend")):
        done = subprocess.run(
            [pythons[service], "-c", probe, service, "servicekit", other, "rich", "pytest"],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,  # not the checkout, whose folders would import as packages
        )
        # The service and servicekit; not the other service, nor the
        # development environment's packages (structlog would load rich).
        assert done.stdout.split() == ["True", "True", "False", "False", "False"], service


def test_a_sync_that_fails_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "elsewhere"\nversion = "0"\n')
    with pytest.raises(environments.ServiceEnvironmentError) as failure:
        environments.service_pythons(tmp_path, tmp_path / "envs")
    assert "the backend environment could not be synced" in str(failure.value)
    assert "\n" not in str(failure.value)
