"""Where the label events live: a DuckDB file (the default, one process) or Postgres (several
app processes, ``MEMEUI_STORE=postgresql://…``).

The store writes one SQL for both (``?`` placeholders, ``= ANY(?)`` for lists); each database
here runs it and does the few things the two do differently: transactions, locks, id
sequences, Parquet in and out, and what a duplicate key looks like.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Iterator, Protocol

import duckdb

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
MIGRATION_LOCK = 72_616_001  # the advisory lock Postgres processes migrate under, one at a time


class StoreLocked(RuntimeError):
    """Another process holds the DuckDB file (DuckDB allows one writer process)."""


class StoreUnavailable(RuntimeError):
    """The Postgres server does not answer (down, restarting, refusing): try again."""


class Transaction(Protocol):
    def execute(self, query: str, params: list | tuple = ()) -> list[tuple]: ...

    def executemany(self, query: str, rows: list[tuple]) -> None: ...


class Database(Protocol):
    name: str  # what messages call it

    def query(self, query: str, params: list | tuple = ()) -> tuple[list[str], list[tuple]]: ...

    def transaction(self, exclusive: bool = False) -> contextlib.AbstractContextManager[Transaction]: ...

    def writing(self) -> contextlib.AbstractContextManager: ...

    def continue_sequence(self, sequence: str, top: int) -> None: ...

    def export_parquet(self, query: str, out: Path) -> None: ...

    def load_parquet(self, transaction: Transaction, table: str, path: Path) -> None: ...

    def is_duplicate(self, error: Exception) -> bool: ...

    def close(self) -> None: ...


def open_database(location: str | Path) -> Database:
    """Postgres for a ``postgresql://`` URL, else the DuckDB file at ``location``."""
    if str(location).startswith(POSTGRES_SCHEMES):
        return Postgres(str(location))
    return DuckDB(Path(location))


def parquet_columns(path: Path) -> list[str]:
    return [row[0] for row in duckdb.connect().execute(
        "DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]


class DuckDB:
    """One read-write connection per process (DuckDB lets one process hold the file), a
    cursor per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = duckdb.connect(str(path))
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise StoreLocked(
                    f"{path} is held by another process (a running `memeui serve`?): "
                    "stop it, or pass --server URL to go through it") from None
            raise
        self._local = threading.local()
        self._writing = threading.Lock()  # one upsert at a time in this process: DuckDB would
        # refuse concurrent upserts of one row (a new annotator's first labels, one item)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._connection.cursor()
        return cursor

    def query(self, query: str, params: list | tuple = ()) -> tuple[list[str], list[tuple]]:
        cursor = self._cursor().execute(query, list(params))
        names = [d[0] for d in cursor.description] if cursor.description else []
        return names, cursor.fetchall()

    @contextlib.contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[Transaction]:
        cursor = self._cursor()
        cursor.execute("BEGIN TRANSACTION")
        try:
            yield _DuckTransaction(cursor)
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise

    def writing(self) -> contextlib.AbstractContextManager:
        return self._writing

    def continue_sequence(self, sequence: str, top: int) -> None:
        self.query(f"SELECT max(nextval('{sequence}')) FROM range({int(top)})")

    def export_parquet(self, query: str, out: Path) -> None:
        target = str(out).replace("'", "''")
        self._cursor().execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)")

    def load_parquet(self, transaction: Transaction, table: str, path: Path) -> None:
        source = str(path).replace("'", "''")
        names = ", ".join(parquet_columns(path))
        transaction.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM read_parquet('{source}')")

    def is_duplicate(self, error: Exception) -> bool:
        return isinstance(error, duckdb.ConstraintException)

    def close(self) -> None:
        self._connection.close()


class _DuckTransaction:
    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor

    def execute(self, query: str, params: list | tuple = ()) -> list[tuple]:
        cursor = self._cursor.execute(query, list(params))
        return cursor.fetchall() if cursor.description else []

    def executemany(self, query: str, rows: list[tuple]) -> None:
        self._cursor.executemany(query, rows)


# Postgres type OIDs → Arrow types, for Parquet written from a query's rows
_ARROW_TYPES = {16: "bool", 20: "int64", 21: "int64", 23: "int64", 700: "float64",
                701: "float64", 25: "string", 1043: "string"}


class Postgres:
    """A pool of autocommit connections shared by this process's threads; every app process
    opens its own, and the server orders their writes."""

    def __init__(self, url: str, max_connections: int = 16, timeout_s: float = 10.0) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError:
            raise StoreUnavailable("MEMEUI_STORE names Postgres, which needs psycopg: "
                                   "pip install '.[cluster]'") from None
        self._psycopg, self._pool_timeout = psycopg, PoolTimeout
        self.name = _without_password(url)
        self.timeout_s = timeout_s
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False,
                                    kwargs={"autocommit": True}, timeout=timeout_s,
                                    check=ConnectionPool.check_connection,  # a restarted server's
                                    name="memeui-labels")  # dead connections are dropped, not used
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except Exception as error:  # noqa: BLE001 - the pool says why in its own words
            self._pool.close()
            raise StoreUnavailable(f"the label store at {self.name} does not answer: {error}") from None

    @contextlib.contextmanager
    def _connection(self):
        try:
            with self._pool.connection() as connection:
                yield connection
        except self._psycopg.OperationalError as error:
            raise StoreUnavailable(f"the label store at {self.name} did not answer "
                                   f"({str(error).strip() or type(error).__name__}): try again") from None
        except self._pool_timeout as error:
            raise StoreUnavailable(f"the label store at {self.name} did not answer in "
                                   f"{self.timeout_s:g} s ({error}): try again") from None

    def query(self, query: str, params: list | tuple = ()) -> tuple[list[str], list[tuple]]:
        with self._connection() as connection:
            cursor = _run(connection, query, params)
            if cursor.description is None:
                return [], []
            return [column.name for column in cursor.description], cursor.fetchall()

    @contextlib.contextmanager
    def transaction(self, exclusive: bool = False) -> Iterator[Transaction]:
        with self._connection() as connection, connection.transaction():
            if exclusive:  # another process migrating waits here, then sees its work
                connection.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            yield _PostgresTransaction(connection)

    def writing(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # the server orders concurrent upserts itself

    def continue_sequence(self, sequence: str, top: int) -> None:
        self.query("SELECT setval(?, ?)", [sequence, int(top)])

    def export_parquet(self, query: str, out: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with self._connection() as connection:
            cursor = _run(connection, query)
            columns = [(c.name, _ARROW_TYPES.get(c.type_code, "string")) for c in cursor.description]
            rows = cursor.fetchall()
        schema = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in columns])
        values = {name: [row[i] for row in rows] for i, (name, _) in enumerate(columns)}
        pq.write_table(pa.table(values, schema=schema), out)

    def load_parquet(self, transaction: Transaction, table: str, path: Path) -> None:
        names = parquet_columns(path)
        rows = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        marks = ", ".join("?" for _ in names)
        transaction.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)

    def is_duplicate(self, error: Exception) -> bool:
        return isinstance(error, self._psycopg.errors.UniqueViolation)

    def close(self) -> None:
        self._pool.close()


class _PostgresTransaction:
    def __init__(self, connection) -> None:
        self._connection = connection

    def execute(self, query: str, params: list | tuple = ()) -> list[tuple]:
        cursor = _run(self._connection, query, params)
        return cursor.fetchall() if cursor.description else []

    def executemany(self, query: str, rows: list[tuple]) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(_placeholders(query), rows)


def _run(connection, query: str, params: list | tuple = ()):
    """``query`` on ``connection``; without parameters it goes as written (a migration's
    several statements, a literal ``%``)."""
    if not params:
        return connection.execute(query)
    return connection.execute(_placeholders(query), list(params))


def _placeholders(query: str) -> str:
    """The store's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled first)."""
    return query.replace("%", "%%").replace("?", "%s")


def _without_password(url: str) -> str:
    """The URL as messages and logs may show it."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}{at}{host}"
