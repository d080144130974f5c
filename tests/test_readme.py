"""The README's commands are the ones CI runs, and the docs it links to exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What .ci/run runs, in this order, each line after a ``# README <kind> command:`` marker.
CI_KINDS = ["set-up", "lint", "type-check", "layers", "test"]


def _ci_commands() -> dict[str, str]:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = re.compile(r"# README (\S+) command:")
    found = [(m.group(1), ci[i + 1]) for i, line in enumerate(ci) if (m := marker.match(line))]
    assert [kind for kind, _ in found] == CI_KINDS, found
    return dict(found)


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_ci_runs_the_readme_setup_lint_and_test_commands() -> None:
    """The line after each '# README ... command:' marker in .ci/run is a line of the README,
    and .ci/run runs set-up, lint, type check, layers and tests in that order."""
    readme = (ROOT / "README.md").read_text()
    for kind, cmd in _ci_commands().items():
        assert f"\n{cmd}\n" in readme, (kind, cmd)


def test_every_check_of_the_readme_development_section_runs_in_ci() -> None:
    """Each command in the README's 'Develop' code block is one .ci/run runs (and the lint,
    type and layer checks are all there), so the README never promises a check CI skips."""
    develop = _section((ROOT / "README.md").read_text(), "Develop")
    block = re.search(r"```sh\n(.*?)```", develop, re.S)
    assert block, "the Develop section has no ```sh block"
    commands = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    ci = _ci_commands()
    assert commands == [ci["lint"], ci["type-check"], ci["layers"]], commands


def test_import_contracts_are_the_layers_the_docs_name() -> None:
    """Every import-linter contract in pyproject.toml (the five layer rules, no circles, the
    CLI alone importing commands) is stated, word for word, in docs/architecture.md and in the
    README's Develop section, and each of the five rooms is a root package of the contracts:
    the checked layers and the documented ones are the same."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    linter = pyproject["tool"]["importlinter"]
    assert sorted(linter["root_packages"]) == ["config", "drivers", "models", "pipeline",
                                               "station"]
    architecture = " ".join((ROOT / "docs" / "architecture.md").read_text().split())
    develop = " ".join(_section((ROOT / "README.md").read_text(), "Develop").split())
    names = [c["name"] for c in linter["contracts"]]
    assert len(names) == 7, names
    for name in names:
        assert name in architecture, f"docs/architecture.md does not state {name!r}"
        assert name in develop, f"README's Develop section does not state {name!r}"


def test_readme_links_resolve() -> None:
    """Every relative link in the README names a file in the repository."""
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (ROOT / target).exists(), target
