"""The Postgres connection's translation of the caches' statements and its care with passwords (no server)."""

from reflection_assets.database import location, shown_location
from reflection_assets.postgres import is_postgres, libpq_url, shown_url, to_pyformat


def test_placeholders_become_pyformat_and_quoted_text_is_left_alone():
    assert to_pyformat("SELECT * FROM t WHERE a = ? AND b IN (SELECT unnest(?::VARCHAR[]))") == (
        "SELECT * FROM t WHERE a = %s AND b IN (SELECT unnest(%s::VARCHAR[]))"
    )
    assert to_pyformat("SELECT '?', \"a?\", ? WHERE x LIKE '5%'") == "SELECT '?', \"a?\", %s WHERE x LIKE '5%%'"


def test_a_postgres_location_is_told_from_a_file_and_kept_as_text():
    assert is_postgres("postgresql://u@h:5432/db") and is_postgres("postgresql+psycopg2://u@h/db")
    assert not is_postgres("data/warehouse.duckdb") and not is_postgres("s3://bucket/tables")
    assert location("postgresql://u@h:5432/db") == "postgresql://u@h:5432/db"  # a Path would fold the `//`
    assert libpq_url("postgresql+psycopg2://u@h/db") == "postgresql://u@h/db"


def test_a_password_in_the_url_is_never_shown():
    assert shown_url("postgresql://reflection:s3cret@db:5432/cache") == "postgresql://reflection:***@db:5432/cache"
    assert "s3cret" not in shown_location("postgresql://reflection:s3cret@db/cache")
    assert shown_url("postgresql://reflection@db/cache") == "postgresql://reflection@db/cache"
