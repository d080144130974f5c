"""station.terminal: what interactive commands say and ask, and Ctrl-C as a flag."""

from __future__ import annotations

import io
import signal

from station.terminal import Console, sigint_flag


class Tty(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_unattended_never_asks_and_live_lines_are_plain_off_a_terminal() -> None:
    """interactive=False: ask returns '' without calling the asker, Enter is never pressed;
    live lines on a pipe or file are plain lines."""
    asked: list[str] = []
    out = io.StringIO()
    console = Console(out, interactive=False, ask=lambda p: asked.append(p) or "x")
    assert console.ask("go? ") == "" and asked == []
    assert console.enter_pressed() is False
    console.live("focus 12.0")
    console.say("done")
    assert out.getvalue() == "focus 12.0\ndone\n"


def test_answers_are_trimmed_lowercase_and_ctrl_d_means_quit() -> None:
    """The technician's answer comes back stripped and lower-cased after a blank line; EOF
    (Ctrl-D) is 'q'."""
    out = io.StringIO()
    assert Console(out, interactive=True, ask=lambda p: "  Skip \n").ask("go? ") == "skip"
    assert out.getvalue() == "\n"

    def eof(prompt: str) -> str:
        raise EOFError

    assert Console(io.StringIO(), interactive=True, ask=eof).ask("go? ") == "q"


def test_live_lines_rewrite_in_place_on_a_terminal() -> None:
    """On a terminal a live line is rewritten with a carriage return and erase-to-end; the
    next plain line starts on a fresh line."""
    out = Tty()
    console = Console(out, interactive=False)
    console.live("a")
    console.live("b")
    console.say("c")
    assert out.getvalue() == "\ra\x1b[K\rb\x1b[K\nc\n"


def test_ctrl_c_inside_sets_the_flag_and_the_old_handler_comes_back() -> None:
    """SIGINT delivered inside the block sets the flag instead of raising; on leaving, the
    previous handler is in force again."""
    before = signal.getsignal(signal.SIGINT)
    with sigint_flag() as flag:
        assert flag == [False]
        signal.raise_signal(signal.SIGINT)  # the handler runs before raise_signal returns
        assert flag == [True]
    assert signal.getsignal(signal.SIGINT) is before
