"""Schema revisions: upgrade from empty, round trips with data, mismatch messages, ORM agreement."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from simcons.catalog import DatasetSpec, ModelSpec
from simcons.storage import PairValue, ResultStore, SchemaError, make_engine
from simcons.storage.migrate import current_revision, downgrade, head_revision, upgrade
from simcons.storage.schema import Base
from simcons.storage.views import VIEWS


def _seed(url: str) -> None:
    st = ResultStore(url)
    st.upsert_models(
        [
            ModelSpec(
                key="m1",
                loader="timm",
                model_name="resnet18",
                module_name="global_pool",
                attributes={"objective": "Supervised"},
            ),
            ModelSpec(
                key="m2",
                loader="timm",
                model_name="resnet34",
                module_name="global_pool",
                attributes={"objective": "Self-Supervised"},
            ),
        ]
    )
    st.upsert_datasets([DatasetSpec(key="d1", name="D1", category="c", source="demo")])
    st.ensure_metric("cka_kernel_linear_unbiased", "cka", {})
    st.upsert_pairs("d1", "cka_kernel_linear_unbiased", [PairValue("m1", "m2", 0.25)])
    st.close()


def test_empty_database_upgrades_to_head(db_url):
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    names = set(inspect(engine).get_table_names())
    assert {
        "models",
        "model_attributes",
        "datasets",
        "subsets",
        "subset_members",
        "extraction_runs",
        "metrics",
        "pair_similarities",
        "probe_results",
    } <= names
    assert set(VIEWS) <= set(inspect(engine).get_view_names())
    engine.dispose()


def test_orm_matches_head_revision(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_data_survives_downgrade_and_upgrade(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    _seed(db_url)
    query = text("SELECT model_a, model_b, value, a_objective, b_objective FROM pair_view")
    with engine.connect() as conn:
        before = conn.execute(query).all()
    downgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    assert "ix_pairs_dataset_metric" not in {
        ix["name"] for ix in inspect(engine).get_indexes("pair_similarities")
    }
    with engine.connect() as conn:
        assert conn.execute(query).all() == before
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(query).all() == before
    assert before == [("m1", "m2", 0.25, "Supervised", "Self-Supervised")]
    engine.dispose()


def test_store_refuses_older_revision(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with pytest.raises(SchemaError, match="simcons db upgrade"):
        ResultStore(db_url)
    upgrade(engine)
    ResultStore(db_url).close()
    engine.dispose()


def test_store_refuses_empty_database(db_url):
    with pytest.raises(SchemaError, match="simcons db init"):
        ResultStore(db_url)


def test_store_refuses_unknown_revision(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'abc123'"))
    with pytest.raises(SchemaError, match="does not know"):
        ResultStore(db_url)
    engine.dispose()
