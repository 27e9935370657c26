"""Property: every row read is accepted or rejected with a known reason, nothing lost, nothing
invented, whatever the bytes. Whole-file errors only where the module documents them."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflection_assets.ingest.errors import DatasetReadError
from reflection_assets.ingest.readers import read_dataset
from reflection_assets.ingest.reasons import REASONS

GOOD = [
    {"instruction": "Add 2 and 3.", "output": "5"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
]
FIELD_VALUES = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "   ", "a\x00b", "\ud800", "ok"]),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
)
ROWS = st.fixed_dictionaries(
    {}, optional={k: FIELD_VALUES for k in ("instruction", "input", "output", "system")}
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
LINES = st.one_of(
    st.binary(max_size=24).map(lambda b: b.replace(b"\n", b" ")),  # random bytes
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),  # any JSON value
    ROWS.map(lambda r: json.dumps(r, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")),
    st.sampled_from(GOOD).map(lambda r: json.dumps(r).encode()),  # duplicates, often
    st.just(b""),  # blank lines are not rows
)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def nonblank_line_numbers(data: bytes) -> list[int]:
    body = data.removeprefix(b"\xef\xbb\xbf")  # a leading BOM belongs to no row
    return [n for n, line in enumerate(body.split(b"\n"), start=1) if line.strip(b" \t\r")]


def check_accounting(result, expected_rows: list[int]) -> None:
    assert result.rows_read == len(result.accepted) + len(result.rejected) == len(expected_rows)
    placed = sorted([p.source_row for p in result.provenance] + [r.source_row for r in result.rejected])
    assert placed == expected_rows  # every row once, at its own line
    assert all(r.reason in REASONS for r in result.rejected)
    ids = [p.row_id for p in result.accepted]
    assert len(ids) == len(set(ids))  # duplicates never accepted twice
    for row in result.rejected:
        row.raw_text.encode("utf-8")  # always storable
        assert "\n" not in row.raw_text


@FAST
@given(lines=st.lists(LINES, max_size=20))
def test_jsonl_after_a_good_first_row_never_loses_a_row(tmp_path_factory, lines):
    data = b"\n".join([json.dumps(GOOD[0]).encode(), *lines])
    path = tmp_path_factory.mktemp("prop") / "rows.jsonl"
    path.write_bytes(data)
    check_accounting(read_dataset(path, format="alpaca"), nonblank_line_numbers(data))


@FAST
@given(lines=st.lists(LINES, min_size=1, max_size=20))
def test_any_jsonl_is_fully_accounted_for_or_refused_whole(tmp_path_factory, lines):
    data = b"\n".join(lines)
    path = tmp_path_factory.mktemp("prop") / "rows.jsonl"
    path.write_bytes(data)
    body = data.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")  # what the reader looks at
    try:
        result = read_dataset(path, format="alpaca")
    except DatasetReadError as err:
        # documented whole-file failures: empty, a JSON array that does not parse, one JSON value
        assert "\n" not in str(err) and str(path) in str(err)
        assert not body.strip() or body.startswith(b"[") or _whole_json(body)
        return
    if body.startswith(b"["):
        return  # read as one JSON array: rows are its elements, not lines
    check_accounting(result, nonblank_line_numbers(data))


@FAST
@given(elements=st.lists(st.one_of(ROWS, JSON_VALUES, st.sampled_from(GOOD)), min_size=1, max_size=15))
def test_json_array_accounts_for_every_element(tmp_path_factory, elements):
    path = tmp_path_factory.mktemp("prop") / "rows.json"
    path.write_text(json.dumps(elements))  # ASCII escapes, so lone surrogates survive as "\ud800"
    result = read_dataset(path, format="alpaca")
    check_accounting(result, list(range(len(elements))))


def _whole_json(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return False
    return True


def test_jsonl_whose_first_bytes_look_like_parquet_is_read_as_lines(tmp_path):
    # Found by the property test above: magic bytes must not override a .jsonl name.
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'PAR1 not json\n{"instruction": "a", "output": "b"}\n')
    result = read_dataset(path, format="alpaca")
    assert result.rows_read == 2 and len(result.accepted) == 1
    assert [r.reason for r in result.rejected] == ["invalid_json"]
