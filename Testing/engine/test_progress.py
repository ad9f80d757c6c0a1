from __future__ import annotations

import io
import json

from autoseg.progress import JsonLinesProgress, TextProgressBar


def test_json_lines_are_one_event_per_line():
    stream = io.StringIO()
    progress = JsonLinesProgress(stream)
    progress("fingerprint", 0, 2)
    progress("fingerprint", 2, 2)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert events[-1] == {"event": "progress", "stage": "fingerprint", "done": 2, "total": 2}


def test_text_bar_writes_only_the_final_line_to_a_log():
    stream = io.StringIO()
    bar = TextProgressBar(stream)
    for done in range(11):
        bar("preprocess", done, 10)
    assert stream.getvalue().count("\n") == 1
    assert "10/10" in stream.getvalue()
    assert "\r" not in stream.getvalue()
