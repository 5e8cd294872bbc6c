"""The line-numbered diff of expected vs actual test output (no database needed)."""

from __future__ import annotations

from spawn_db.sqltest.golden import diff


def test_equal_texts_have_no_diff() -> None:
    assert not diff("a\nb\n", "a\nb\n")
    assert diff("a\nb\n", "a\nb\n").render() == []


def test_changed_line_with_three_lines_of_context_and_both_line_numbers() -> None:
    expected = "".join(f"line {i}\n" for i in range(1, 11))
    actual = expected.replace("line 6\n", "line six\n")
    assert diff(expected, actual).render() == [
        "@@ -3,7 +3,7 @@",
        "  3   3  |line 3",
        "  4   4  |line 4",
        "  5   5  |line 5",
        "  6     -|line 6",
        "      6 +|line six",
        "  7   7  |line 7",
        "  8   8  |line 8",
        "  9   9  |line 9",
    ]


def test_line_numbers_follow_each_side_after_insertions() -> None:
    expected = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\n"
    actual = "a\nNEW\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nL\n"
    assert diff(expected, actual).render() == [
        "@@ -1,4 +1,5 @@",
        "  1   1  |a",
        "      2 +|NEW",
        "  2   3  |b",
        "  3   4  |c",
        "  4   5  |d",
        "@@ -9,4 +10,4 @@",
        "  9  10  |i",
        " 10  11  |j",
        " 11  12  |k",
        " 12     -|l",
        "     13 +|L",
    ]


def test_missing_final_newline_is_a_difference_and_is_marked() -> None:
    assert diff("x\n", "x").render() == [
        "@@ -1 +1 @@",
        "  1     -|x",
        "      1 +|x",
        "\\ No newline at end of file",
    ]


def test_leading_and_trailing_blanks_of_psql_output_stay_visible() -> None:
    assert diff(" id \n----\n  1\n", " id \n----\n  2\n").render() == [
        "@@ -1,3 +1,3 @@",
        "  1   1  | id ",
        "  2   2  |----",
        "  3     -|  1",
        "      3 +|  2",
    ]


def test_empty_expected_against_output() -> None:
    assert diff("", "one\n").text() == "@@ -0,0 +1 @@\n      1 +|one\n"

