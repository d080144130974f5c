"""station.commands._common: the one argparse range type, fed garbage and edge values."""

from __future__ import annotations

import argparse

import pytest

from station.commands._common import in_range


@pytest.mark.parametrize(
    ("kind", "low", "high", "what", "unit", "low_open", "text", "value"),
    [
        (int, 1, 99, "channel", "", False, "1", 1),
        (int, 1, 99, "channel", "", False, "99", 99),
        (int, 0, 1_000_000, "", "", False, " 1000000 ", 1_000_000),
        (float, 0.0, 3600.0, "duration", "s", True, "3600", 3600.0),
        (float, 0.0, 3600.0, "", "s", False, "0", 0.0),
        (float, 0.0, 3600.0, "", "s", False, "1e-3", 0.001),
    ],
)
def test_values_inside_the_range_are_returned_as_their_kind(
    kind: type[int] | type[float], low: float, high: float, what: str, unit: str,
    low_open: bool, text: str, value: float,
) -> None:
    """The bounds are inclusive (the low one too unless ``low_open``); the result has the
    requested type."""
    parsed = in_range(kind, low, high, what, unit=unit, low_open=low_open)(text)
    assert parsed == value and type(parsed) is kind


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (in_range(int, 1, 99, "channel"), "0", "channel 0 is outside 1..99"),
        (in_range(int, 1, 99, "channel"), "one", "channel 'one' is not a whole number"),
        (in_range(int, 1, 99, "channel"), "2.5", "channel '2.5' is not a whole number"),
        (in_range(int, 1, 100_000), "100001", "100001 is outside 1..100000"),
        (in_range(int, 64, 8192, unit="px"), "wide", "'wide' is not a whole number of pixels"),
        (in_range(int, 64, 8192, unit="px"), "63", "63 px is outside 64..8192"),
        (in_range(float, 0.0, 3600.0, "duration", unit="s", low_open=True), "0",
         "duration 0.0 s is outside (0, 3600]"),
        (in_range(float, 0.0, 3600.0, "duration", unit="s", low_open=True), "soon",
         "duration 'soon' is not a number of seconds"),
        (in_range(float, 0.0, 3600.0, unit="s"), "nan", "nan s is outside 0..3600"),
        (in_range(float, 0.0, 3600.0, unit="s"), "-inf", "-inf s is outside 0..3600"),
        (in_range(float, 0.0, 3600.0, unit="s"), "", "'' is not a number of seconds"),
        (in_range(int, 0, 99, "NG error number"), "\x00", "NG error number '\\x00' is not a "
         "whole number"),
    ],
)
def test_garbage_and_out_of_range_values_say_value_and_rule(
    parse: argparse._ActionType, text: str, message: str,
) -> None:
    """Every refusal is an ArgumentTypeError (argparse: usage error, exit 2) naming the value
    as given and the range it must be in."""
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value) == message


def test_argparse_names_the_option_in_front() -> None:
    """Used as a ``type``, the message argparse prints starts with the option's name."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--width", type=in_range(int, 64, 8192, unit="px"))
    with pytest.raises(argparse.ArgumentError, match=r"argument --width: 10 px is outside "
                       r"64\.\.8192"):
        parser.parse_args(["--width", "10"])
