"""The report's page rendering (toolchain/verify/render.py): what a reader sees for each kind of value."""

from __future__ import annotations

from toolchain.verify.render import fmt, overall


def test_values_print_as_a_reader_expects_and_text_is_escaped():
    assert fmt(None) == "—"
    assert fmt(True) == "yes" and fmt(False) == "no"
    assert fmt(1.23456, 2) == "1.23"
    assert fmt("<script>") == "&lt;script&gt;"


def test_the_overall_line_names_the_worst_level_and_what_was_not_judged():
    v = {"level": "harm", "judged": ["haspi", "latency"], "not_judged": ["midbrain"]}
    assert overall(v) == "HARM (worst of 2 judged section(s)); not judged: midbrain"
    assert overall({"level": "none"}).startswith("not judged (no section had numbers)")
