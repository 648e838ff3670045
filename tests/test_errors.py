"""Error lines: user values of any length are shown cut, on one line."""

from __future__ import annotations

from vlkge.errors import ECHO_LIMIT, DataError, echo


def test_short_values_are_shown_whole():
    assert echo("tpu") == "'tpu'"
    assert echo("two words", quote=False) == "two words"
    assert echo([1, "a"]) == "[1, 'a']"


def test_long_values_are_cut_with_an_ellipsis():
    shown = echo("x" * 10_000)
    assert len(shown) == ECHO_LIMIT and shown.endswith("...") and shown.startswith("'xxx")
    assert len(echo(["y" * 10_000])) == ECHO_LIMIT


def test_text_is_one_line():
    assert echo("a\n  b\tc", quote=False) == "a b c"
    assert "\n" not in echo("a\nb")  # repr escapes it


def test_an_int_too_long_to_print():
    assert echo(10**5000) == "<int too large to show>"
    assert echo([10**5000]) == "<list too large to show>"


def test_a_data_error_with_a_long_id_stays_short():
    message = str(DataError("train.txt", 3, f"unknown split name {echo('s' * 10_000)}"))
    assert message.startswith("train.txt:3: unknown split name 'sss") and len(message) < 400
