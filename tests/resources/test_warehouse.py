import pytest

from resources.warehouse import Warehouse


def test_query_on_missing_file_is_empty(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "none.duckdb"))
    assert warehouse.query("SELECT 1").empty


def test_reading_a_warehouse_not_written_yet_creates_no_file(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "node" / "warehouse.duckdb"))
    with warehouse.connection(read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables").fetchone() == (0,)
    assert not (tmp_path / "node").exists()


def test_the_local_default_keeps_every_file_under_data(tmp_path, monkeypatch):
    monkeypatch.setenv("REFLECTION_DATA_DIR", str(tmp_path / "data"))
    warehouse = Warehouse(database=str(tmp_path / "data" / "warehouse.duckdb"))
    assert warehouse.store == warehouse.database and warehouse.checkpoint_mirror() is None
    assert warehouse.checkpoints_root() == tmp_path / "data" / "checkpoints"
    folder = warehouse.exports_folder("arms/random/seed0")
    assert folder == tmp_path / "data" / "exports" / "arms" / "random" / "seed0"
    assert warehouse.publish_export(folder) == str(folder) and warehouse.local_adapter("/a/adapter") == "/a/adapter"


def test_the_shared_stores_write_only_scratch_and_never_show_a_password(tmp_path, monkeypatch):
    monkeypatch.setenv("REFLECTION_DATA_DIR", str(tmp_path / "data"))
    warehouse = Warehouse(database=str(tmp_path / "data" / "warehouse.duckdb"), tables_uri="s3://b/tables",
                          store_url="postgresql://reflection:s3cret@db:5432/cache", files_uri="s3://b/files")
    assert warehouse.store.startswith("postgresql://")
    assert warehouse.checkpoints_root() == tmp_path / "data" / "scratch" / "checkpoints"
    assert warehouse.exports_folder("selected") == tmp_path / "data" / "scratch" / "exports" / "selected"
    assert warehouse.exports_location() == "s3://b/files/exports"
    assert "s3cret" not in warehouse.describe() and "***" in warehouse.describe()
    with pytest.raises(ValueError, match="read-only"), warehouse.connection():
        pass
