"""config.errors: the tree its docstring draws is the tree of its classes."""

from __future__ import annotations

import re

import config.errors as errors


def _drawn_tree() -> dict[str, str]:
    """{class name: parent name} as the module docstring draws them."""
    doc = errors.__doc__ or ""
    lines = doc.split("The tree::", 1)[1].splitlines()
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in lines:
        match = re.match(r"^(\s*)(?:[│ ]*[├└]── )?(\w+)\b", line)
        if not match or not match.group(2)[0].isupper():
            continue
        name = match.group(2)
        depth = line.index(name)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def test_docstring_draws_every_error_class_under_its_parent() -> None:
    """Every StationError subclass of the module is in the drawn tree, under its real base,
    and the tree names no class the module lacks (NoAnswer and InferenceError included)."""
    classes = {name: cls for name, cls in vars(errors).items()
               if isinstance(cls, type) and issubclass(cls, errors.StationError)}
    drawn = _drawn_tree()
    assert set(drawn) | {"StationError"} == set(classes)
    for name, parent in drawn.items():
        assert classes[name].__bases__ == (classes[parent],), (name, parent)
    assert drawn["NoAnswer"] == "StationError"
    assert drawn["InferenceError"] == "PipelineError"


def test_the_client_raises_the_tree_s_no_answer() -> None:
    """``station.messaging.client.NoAnswer`` is the tree's class, so ``except StationError``
    in the CLI catches it too."""
    from station.messaging.client import NoAnswer

    assert NoAnswer is errors.NoAnswer
