"""The command line: db lifecycle, ingest, read-only SQL, consistency, clear errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from simcons.cli import main
from simcons.storage import make_engine
from simcons.storage.migrate import downgrade


@pytest.fixture
def run(sqlite_url, tmp_path):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["--db", sqlite_url, "--home", str(tmp_path), *args])

    return invoke


def test_db_lifecycle(run, sqlite_url):
    result = run("db", "status")
    assert "none (run `simcons db init`)" in result.output
    assert run("models").exit_code == 2
    assert "simcons db init" in run("models").output
    assert run("db", "init").exit_code == 0
    assert "revision: 0004" in run("db", "status").output
    downgrade(make_engine(sqlite_url), "0001")
    result = run("ingest", "paper")
    assert result.exit_code == 2 and "simcons db upgrade" in result.output
    assert "0001 -> 0004" in run("db", "upgrade").output


def test_ingest_paper_and_query(run, tmp_path):
    run("db", "init")
    result = run("ingest", "paper")
    assert result.exit_code == 0, result.output
    assert "64 added" in result.output and "23 added" in result.output
    assert "0 added, 0 updated" in run("ingest", "paper").output
    result = run(
        "sql",
        "SELECT objective, COUNT(*) AS n FROM model_catalog GROUP BY objective ORDER BY objective",
    )
    assert result.exit_code == 0
    assert "Image-Text" in result.output and "Self-Supervised" in result.output
    out = tmp_path / "models.csv"
    result = run("sql", "SELECT model FROM model_catalog", "--csv", str(out))
    assert "wrote 64 rows" in result.output
    assert len(out.read_text().splitlines()) == 65


def test_sql_cannot_write(run, sqlite_url):
    run("db", "init")
    run("ingest", "paper")
    for statement in (
        "DELETE FROM models",
        "DROP TABLE models",
        "INSERT INTO metrics (slug, kind, parameters) VALUES ('x', 'y', '{}')",
    ):
        result = run("sql", statement)
        assert result.exit_code == 2
        assert "read-only" in result.output
    with make_engine(sqlite_url).connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM models")).scalar() == 64


def test_sql_cannot_write_postgres(pg_url, tmp_path):
    runner = CliRunner()
    base = ["--db", pg_url, "--home", str(tmp_path)]
    assert runner.invoke(main, [*base, "db", "init"]).exit_code == 0
    runner.invoke(main, [*base, "ingest", "paper"])
    result = runner.invoke(main, [*base, "sql", "DELETE FROM models"])
    assert result.exit_code == 2 and "read-only" in result.output
    result = runner.invoke(main, [*base, "sql", "SELECT COUNT(*) AS n FROM models"])
    assert "64" in result.output


def test_unknown_things_are_named(run):
    run("db", "init")
    run("ingest", "paper")
    result = run("consistency", "--theta", "objective=Nope")
    assert result.exit_code == 2 and "objective takes" in result.output
    result = run("extract", "--models", "no_such_model", "--datasets", "wds/fer2013")
    assert result.exit_code == 2 and "unknown model 'no_such_model'" in result.output
    result = run("extract", "--models", "vgg16", "--datasets", "no_such_dataset")
    assert result.exit_code == 2 and "unknown dataset 'no_such_dataset'" in result.output
    result = run("consistency", "--metric", "cka_kernel_linear_unbiased")
    assert result.exit_code == 2 and "no pairs stored" in result.output


def test_bad_databases_and_options_get_one_clear_line(run, tmp_path):
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello")
    runner = CliRunner()
    result = runner.invoke(main, ["--db", f"sqlite:///{not_db}", "db", "status"])
    assert result.exit_code == 2 and "cannot use the database" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(main, ["--db", "garbage", "models"])
    assert result.exit_code == 2 and "check --db" in result.output
    run("db", "init")
    run("ingest", "demo")
    assert "--metrics names no metric" in run("similarity", "--metrics", "").output
    assert "--datasets names no dataset" in run("similarity", "--datasets", "").output
    assert "give whole numbers" in run("probe", "--seeds", "a,b").output
    assert "use auto, cpu, cuda" in run("extract", "--device", "tpu").output
    assert run("plan", "--block-pairs", "0").exit_code == 2
    result = run("similarity", "--models", "models:efficientnet-lite0")
    assert result.exit_code == 2 and "at least two models" in result.output


def test_foreign_database_is_not_initialised(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE models (x INTEGER)")
        conn.execute("INSERT INTO models VALUES (7)")
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{path}", "db", "init"])
    assert result.exit_code == 2 and "holds other tables (models)" in result.output
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT x FROM models").fetchall() == [(7,)]


@pytest.mark.parametrize("statement", [
    "COPY (SELECT 1) TO '/tmp/simcons-copy-test.txt'",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT 1; DELETE FROM models",
    "ATTACH DATABASE '/tmp/simcons-attach.db' AS x",
    "PRAGMA writable_schema=ON",
])
def test_sql_refuses_what_a_read_only_transaction_allows(run, statement):
    run("db", "init")
    result = run("sql", statement)
    assert result.exit_code == 2 and "simcons sql" in result.output


def test_consistency_explains_an_empty_result(run, sqlite_url):
    from simcons.storage import PairValue, ResultStore

    run("db", "init")
    run("ingest", "demo")
    st = ResultStore(sqlite_url)
    st.ensure_metric("cka_kernel_linear_unbiased", "cka", {})
    for d in ("demo/digits", "demo/mnist"):
        st.upsert_pairs(d, "cka_kernel_linear_unbiased",
                        [PairValue("efficientnet-lite0", "mobilenetv2-deepsort", 0.5)])
    result = run("consistency", "--theta", "models:efficientnet-lite0,mobilenetv2-deepsort")
    assert result.exit_code == 2 and "2 or fewer pairs are skipped" in result.output
