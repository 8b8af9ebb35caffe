"""Start-up cost: `synthgate --help` and `import synthgate` load no heavy stack (torch, Prefect, pandas, GX)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "prefect", "pandas", "great_expectations", "matplotlib", "sklearn", "synthgate.flows.synthesize")


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import synthgate",
        "import synthgate.flows.cli",
        # the help of every command is built, as `synthgate --help` does
        "from typer.main import get_command; from synthgate.flows.cli import app; get_command(app)",
    ],
)
def test_the_command_line_imports_no_heavy_stack(code):
    # Act
    loaded = _modules_after(code)

    # Assert
    assert not loaded & set(HEAVY), f"{code!r} imported {sorted(loaded & set(HEAVY))}"


def test_help_lists_every_command():
    # Act
    done = subprocess.run(
        [sys.executable, "-m", "synthgate.flows.cli", "--help"], capture_output=True, text=True, timeout=120
    )

    # Assert
    assert done.returncode == 0, done.stderr
    for command in ("run", "report", "many", "database", "setup", "images", "schema"):
        assert command in done.stdout
