"""Pages carry their data as JSON inside a script element: no value may end that element early."""

from __future__ import annotations

import json
import re

from pipeline.viz.pack import fill_page


def test_markup_in_data_cannot_end_the_data_script() -> None:
    hostile = 'room</script><script>alert(1)</script><!--<script> & "quotes"'
    data = {"title": hostile, "identity": {"scene": hostile}, "grid": [2, 2]}
    page = fill_page("attention.html", data, ["common.js"], title=hostile)
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert block is not None and "<" not in block.group(1)
    assert json.loads(block.group(1)) == data  # the same values once parsed
    assert page.count("<script>alert(1)") == 0
