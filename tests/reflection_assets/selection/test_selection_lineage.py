"""LINEAGE_SQL follows one raw row through every table, on an in-memory DuckDB."""

from __future__ import annotations

import duckdb
import pytest

from reflection_assets.selection import LINEAGE_COLUMNS, LINEAGE_SQL
from tests.reflection_assets.selection.conftest import lineage_tables


@pytest.fixture
def warehouse(pipeline):
    tables = lineage_tables(pipeline)
    con = duckdb.connect(":memory:")
    for name, frame in tables.items():
        con.register(f"{name}_df", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_df")
    yield con
    con.close()


def test_follows_selected_row_everywhere(warehouse):
    out = warehouse.execute(LINEAGE_SQL, ["r0"]).df()
    assert list(out.columns) == LINEAGE_COLUMNS
    stages = out.groupby("stage", sort=False)["version"].apply(list).to_dict()
    assert stages["raw"] == ["original"]
    assert stages["instruction_score"] == ["original", "reflected"]
    assert stages["response_score"] == ["current", "reflected"]
    assert list(out["step"]) == sorted(out["step"])

    decision = out[out["stage"] == "instruction_decision"].iloc[0]
    assert (decision["decision"], decision["reason"], decision["instruction"]) == (
        "reflected",
        "ifd_increased",
        "Q'-r0",
    )
    final = out[out["stage"] == "response_decision"].iloc[0]
    assert (final["decision"], final["output"], final["ifd"], final["rifd"]) == ("reflected", "A''-r0", 0.7, 0.5)
    sel = out[out["stage"] == "selection"].iloc[0]
    assert (sel["decision"], sel["reason"], sel["status"]) == ("selected", "selected:answer_won", "ok")
    arms = out[out["stage"] == "arm"]
    assert {"selective", "full"} <= set(arms["arm"])
    assert arms.set_index("arm").loc["full", "output"] == "A-r0"


def test_failed_row_and_unknown_id(warehouse):
    out = warehouse.execute(LINEAGE_SQL, ["r8"]).df()
    refl = out[out["stage"] == "instruction_reflection"].iloc[0]
    assert refl["outcome"] == "parse_failed"
    sel = out[out["stage"] == "selection"].iloc[0]
    assert (sel["decision"], sel["reason"]) == ("not_selected", "answer_lost")
    arms = set(out.loc[out["stage"] == "arm", "arm"])
    assert "full" in arms and "ifd_topk" in arms  # r8 has the highest ok raw IFD
    assert not arms & {"selective", "reflected_all"}  # not selected, no stage-1 rewrite
    assert warehouse.execute(LINEAGE_SQL, ["nope"]).df().empty
