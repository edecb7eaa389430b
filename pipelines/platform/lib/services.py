"""The production profile's shared services: PostgreSQL (Dagster storage, MLflow backend, Feast
registry) and Redis (Feast online store), named by two environment variables.

FLIGHTLINE_POSTGRES_URL=postgresql+psycopg2://user:password@host:5432/flightline
FLIGHTLINE_REDIS_URL=redis://host:6379/0

The driver is explicit because SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not
installed; Dagster reads the variable as it is, so the start-up check refuses any other scheme.

One PostgreSQL URL names three databases: `<db>` holds Dagster's instance storage, `<db>_mlflow`
MLflow's backend store and `<db>_feast` Feast's SQL registry; each tool owns its tables and
migrations, so they never share one schema. `provision()` creates the databases (`make setup`
runs it); the start-up check only connects, so a wrong database name is an error, not a new
database.

    python -m pipelines.platform.lib.services check       # what `flightline run` and the service do first
    python -m pipelines.platform.lib.services provision   # create the three databases if they are missing
"""

import os
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

POSTGRES_ENV = "FLIGHTLINE_POSTGRES_URL"
REDIS_ENV = "FLIGHTLINE_REDIS_URL"
CONNECT_TIMEOUT_S = 3  # a start-up check, not a query: a server that is down fails fast
DATABASE_SUFFIXES = {"dagster": "", "mlflow": "_mlflow", "feast": "_feast"}
POSTGRES_SCHEME = "postgresql+psycopg2"


class ServiceUnavailable(RuntimeError):
    """A configured service cannot be reached or refuses our credentials."""


def mask(url: str) -> str:
    """The URL with its password replaced, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_database(url: str, database: str, scheme: str | None = None) -> str:
    """The same server and credentials, another database (and optionally another scheme)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}", scheme=scheme or parts.scheme))


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise ValueError(f"{mask(url)}: the URL names no database (…:5432/<database>)")
    return name


@dataclass(frozen=True)
class ProductionServices:
    """Where each tool keeps its state in the production profile."""

    postgres_url: str | None = None
    redis_url: str | None = None

    @classmethod
    def from_env(cls) -> "ProductionServices":
        return cls(os.environ.get(POSTGRES_ENV) or None, os.environ.get(REDIS_ENV) or None)

    def database_url(self, role: str) -> str:
        assert self.postgres_url, "no PostgreSQL configured"
        name = database_name(self.postgres_url) + DATABASE_SUFFIXES[role]
        return with_database(self.postgres_url, name, POSTGRES_SCHEME)

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.database_url("mlflow")

    @property
    def feast_registry_url(self) -> str:
        return self.database_url("feast")

    def check_scheme(self) -> None:
        scheme = urlsplit(self.postgres_url or "").scheme
        if self.postgres_url and scheme != POSTGRES_SCHEME:
            raise ServiceUnavailable(
                f"{POSTGRES_ENV}={mask(self.postgres_url)}: use {POSTGRES_SCHEME}://... "
                f"(SQLAlchemy maps {scheme}:// to psycopg 3, which is not installed)"
            )


def redis_connection_string(url: str) -> str:
    """redis://[:password@]host:port/db -> Feast's "host:port,db=N[,password=...]" form, with
    short timeouts so that a Redis that is down answers with an error instead of hanging."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{mask(url)}: expected redis://host:port/db")
    db = parts.path.lstrip("/") or "0"
    items = [f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}", f"db={int(db)}"]
    if parts.username:
        items.append(f"username={parts.username}")
    if parts.password:
        items.append(f"password={parts.password}")
    if parts.scheme == "rediss":
        items.append("ssl=true")
    items += [f"socket_connect_timeout={CONNECT_TIMEOUT_S}", f"socket_timeout={CONNECT_TIMEOUT_S}"]
    return ",".join(items)


def check_postgres(url: str) -> None:
    import psycopg2

    try:
        psycopg2.connect(_libpq(url), connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg2.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(
            f"PostgreSQL {mask(url)} refused the connection: {reason}"
        ) from exc


def redis_client(url: str):
    """A client that gives up within about a second when Redis is down: redis-py's default
    retries with backoff of up to 10 s, so a request would hang instead of answering 503."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2),
    )


def check_redis(url: str) -> None:
    import redis

    try:
        client = redis_client(url)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError) as exc:
        raise ServiceUnavailable(f"online store unreachable: {mask(url)} ({exc})") from exc


def check_uri(uri: str | None) -> None:
    """Connect to the server behind a store URI if it is one (files and SQLite need none)."""
    if not uri:
        return
    scheme = urlsplit(uri).scheme
    if scheme.startswith("postgresql"):
        check_postgres(uri)
    elif scheme in ("redis", "rediss"):
        check_redis(uri)


def check_services(services: ProductionServices | None = None) -> list[str]:
    """Connect to every configured database and to Redis; raise naming the first that fails.
    Returns what was checked (empty in the embedded profile)."""
    services = services or ProductionServices.from_env()
    checked = []
    services.check_scheme()
    if services.postgres_url:
        for role in DATABASE_SUFFIXES:
            url = services.database_url(role)
            check_postgres(url)
            checked.append(mask(url))
    if services.redis_url:
        check_redis(services.redis_url)
        checked.append(mask(services.redis_url))
    return checked


def provision(services: ProductionServices | None = None) -> list[str]:
    """Create the profile's databases that do not exist yet (on the server of the URL, through
    its maintenance database); returns those created."""
    import psycopg2
    from psycopg2 import sql

    services = services or ProductionServices.from_env()
    if not services.postgres_url:
        return []
    services.check_scheme()
    admin = with_database(services.postgres_url, "postgres")
    try:
        conn = psycopg2.connect(_libpq(admin), connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg2.Error as exc:
        raise ServiceUnavailable(
            f"PostgreSQL {mask(admin)} refused the connection: {str(exc).strip()}"
        ) from exc
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    created = []
    try:
        with conn.cursor() as cur:
            for role in DATABASE_SUFFIXES:
                name = database_name(services.database_url(role))
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                    created.append(name)
    finally:
        conn.close()
    return created


def _libpq(url: str) -> str:
    # libpq understands postgresql:// but not SQLAlchemy's driver suffix.
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    services = ProductionServices.from_env()
    if not (services.postgres_url or services.redis_url):
        print(f"embedded profile ({POSTGRES_ENV} and {REDIS_ENV} unset): nothing to {command}")
        return 0
    try:
        if command == "provision":
            created = provision(services)
            print("created databases: " + (", ".join(created) or "none (all exist)"))
        for name in check_services(services):
            print(f"ok: {name}")
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
