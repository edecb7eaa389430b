"""The production profile keeps tuning studies in the instance's PostgreSQL database, in a schema
of their own (Optuna and Dagster both have an `alembic_version` table), and resumes them there."""

import secrets

import dagster as dg
import psycopg2
import pytest

from pipelines.platform.components.model import tuning_storage
from pipelines.platform.lib.modeling.families import family
from pipelines.platform.lib.modeling.fit import prepare
from pipelines.platform.lib.services import POSTGRES_ENV
from pipelines.platform.lib.tuning import POSTGRES_SCHEMA, open_storage, parse_search, tune
from tests.defs.test_model_factory import TOY, toy_examples
from tests.production.conftest import PG_SERVER, admin_connection, start_local_servers


@pytest.fixture
def database():
    start_local_servers()
    name = f"flightline_test_tune_{secrets.token_hex(4)}"
    conn = admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'create database "{name}"')
        yield f"{PG_SERVER}/{name}"
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
    finally:
        conn.close()


def test_studies_live_in_their_own_schema_of_the_instance_database(database, monkeypatch):
    monkeypatch.setenv(POSTGRES_ENV, database)
    monkeypatch.delenv("FLIGHTLINE_TUNING_STORAGE", raising=False)
    with dg.instance_for_test() as instance:
        assert tuning_storage(instance) == database
    fam = family("lightgbm")
    spec = parse_search(fam, {"space": {"num_leaves": {"low": 3, "high": 15}}, "n_trials": 2}, "t")
    prepared = prepare(TOY, toy_examples(days=12, per_day=60), TOY.split)
    base = {"max_rounds": 30, "num_threads": 1}
    run = dict(storage=open_storage(database), study_name="pg", seed=0)
    first = tune(fam, spec, prepared.args, base, **run)
    assert first.ran_here == 2
    again = tune(fam, spec, prepared.args, base, **run)  # a re-run resumes: nothing to do
    assert again.ran_here == 0 and again.best_trial == first.best_trial
    conn = psycopg2.connect(database.replace("+psycopg2", ""))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'trials'"
            )
            assert [r[0] for r in cur.fetchall()] == [POSTGRES_SCHEMA]
            cur.execute(f"SELECT count(*) FROM {POSTGRES_SCHEMA}.trials")
            assert cur.fetchone()[0] == 2
    finally:
        conn.close()
