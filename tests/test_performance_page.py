"""Figures live in bench records; `docs/performance.md` is rendered from them and must match."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import render_performance  # noqa: E402
from bench.results import record  # noqa: E402


def test_performance_page_is_rendered_from_the_records():
    # Act
    text = render_performance.render()

    # Assert: the committed page is exactly what the records give, and every record names command, commit, machine
    assert (ROOT / "docs" / "performance.md").read_text() == text
    for path in (ROOT / "bench" / "results").glob("*.json"):
        data = json.loads(path.read_text())
        assert data["command"].startswith("python bench/") and data["commit"] and data["machine"], path.name
        assert data["rows"], path.name


def test_a_record_carries_command_commit_machine_and_renders_as_a_table(tmp_path, monkeypatch):
    # Arrange
    monkeypatch.setattr(sys, "argv", ["bench/fit_speed.py", "--rows", "1000"])
    rows = [{"rows": 1000, "fit_s": 0.25}, {"rows": 100_000, "fit_s": 12.5}]

    # Act
    path = record("fit_speed", rows, title="GMM fit speed", notes=["loaded machine"], directory=tmp_path)
    again = record("fit_speed", rows[:1], title="GMM fit speed", directory=tmp_path)
    page = render_performance.render(tmp_path)

    # Assert: a rerun replaces the record; the page shows the command, commit and the rows
    data = json.loads(path.read_text())
    assert again == path and [p.name for p in tmp_path.iterdir()] == ["fit_speed.json"]
    assert data["command"] == "python bench/fit_speed.py --rows 1000"
    assert data["commit"] and "CPU" in data["machine"]
    assert "## GMM fit speed\n" in page and "`python bench/fit_speed.py --rows 1000`" in page
    assert "| rows | fit_s |" in page and "| 1000 | 0.25 |" in page and "100,000" not in page
