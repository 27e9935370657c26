from resources.warehouse import Warehouse


def test_query_on_missing_file_is_empty(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "none.duckdb"))
    assert warehouse.query("SELECT 1").empty
