import pytest

from vtclip.table import Table


def test_table_html_and_text_agree_on_cells():
    t = Table([{"dataset": "pocket-pairs", "top-1": 75.44, "n": 1000},
               {"dataset": "pocket-objects", "top-1": None, "n": 7}], caption="Top-1 <%>")
    html = t._repr_html_()
    assert "<caption>Top-1 &lt;%&gt;</caption>" in html
    assert "<td style=\"text-align: right\">75.4</td>" in html
    assert "<td style=\"text-align: left\">pocket-objects</td>" in html
    assert html.count("<tr>") == 3
    lines = repr(t).splitlines()
    assert lines[0] == "Top-1 <%>"
    assert lines[2].startswith("pocket-pairs") and lines[2].endswith("75.4  1000")
    assert lines[3].endswith("7")        # None is an empty cell, integers are not reformatted


def test_table_formats_and_sequence_rows():
    t = Table([["a", 1.23456]], columns=["name", "x"], formats={"x": "{:+.2f}"})
    assert t.text()[1] == ["a", "+1.23"]


def test_table_rejects_bad_rows():
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        Table([["a"]], columns=["name", "x"])
    with pytest.raises(ValueError, match="not in the columns"):
        Table([{"a": 1}, {"b": 2}])
    with pytest.raises(ValueError, match="give `columns`"):
        Table([["a", 1]])
