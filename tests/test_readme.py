"""The README's commands are the ones CI runs, and the docs it links to exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_setup_and_test_commands() -> None:
    """The line after each '# README set-up/test command:' in .ci/run is in the README."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = re.compile(r"# README (set-up|test) command:")
    commands = [ci[i + 1] for i, line in enumerate(ci) if marker.match(line)]
    assert len(commands) == 2
    for cmd in commands:
        assert f"\n{cmd}\n" in readme, cmd


def test_readme_links_resolve() -> None:
    """Every relative link in the README names a file in the repository."""
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (ROOT / target).exists(), target
