"""The README tour's output matching (tests/e2e/readme_tour.py) must be able to fail."""

from __future__ import annotations

from tests.e2e.readme_tour import blocks, expected_outputs, matches


def test_json_shapes_match_keys_values_and_ellipses() -> None:
    shown = '{"stream_id": "…", "kafka_topic": "esb.acme.user-events", "offset": 0, …}'
    assert matches(shown, '{"stream_id": "x1", "kafka_topic": "esb.acme.user-events", "offset": 0}')
    assert not matches(shown, '{"stream_id": "x1", "kafka_topic": "esb.acme.other", "offset": 0}')
    assert not matches(shown, '{"kafka_topic": "esb.acme.user-events", "offset": 0}')
    assert not matches(
        shown, '{"stream_id": "x1", "kafka_topic": "esb.acme.user-events", "offset": 1}'
    )
    assert not matches(shown, "Internal Server Error")
    nested = '{"results": [{"key": "order-1", "orders": 3, "window_start_ms": …}], …}'
    assert matches(nested, '{"results": [{"key": "order-1", "orders": 3, "window_start_ms": 5}]}')
    assert not matches(nested, '{"results": []}')


def test_text_outputs_and_where_they_are_read_from() -> None:
    assert matches("submitted pipeline 5f0c… (Ray job esb-pipeline-5f0c…)",
                   "submitted pipeline 5f0c12 (Ray job esb-pipeline-5f0c12)")  # fmt: skip
    assert not matches("submitted pipeline …", "refused: no such stream")
    body = 'curl x\n# {"a": 1,\n#  "b": 2}\n# next\n\n# a comment, no output\necho hi  # nor this\n'
    assert expected_outputs(body) == ['{"a": 1,\n "b": 2}', "next"]
    readme = "<!-- tour: skip -->\n```bash\nmake run\n```\n\n```python\nprint(1)\n```\n"
    assert [(b.lang, b.mode, b.line) for b in blocks(readme)] == [
        ("bash", "skip", 2),
        ("python", None, 6),
    ]
