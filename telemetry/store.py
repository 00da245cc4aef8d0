"""Telemetry stores: one narrow interface, two ClickHouse backends.

- :class:`ServerStore` talks to a ClickHouse server over the native protocol
  (clickhouse-driver), ClickHouse 18.16 and later.
- :class:`EmbeddedStore` runs current ClickHouse in-process with chdb on a data
  directory. Only one process can open that directory; other processes query it
  through the worker's ``/sql`` endpoint (``autosteer sql`` does this by itself).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from autosteer.errors import ConfigError, QueryRejected, StoreError
from autosteer.settings import Settings
from autosteer.telemetry.schema import ddl

log = logging.getLogger(__name__)

Rows = list[tuple[Any, ...]]
READ_PREFIXES = ("select", "with", "show", "describe", "desc", "exists", "explain")


class TelemetryStore(Protocol):
    database: str

    def setup(self) -> None:
        """Create the database and tables if missing."""

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows (tuples in ``columns`` order) into ``database.table``."""

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> None:
        """Insert ``data``, one equally long sequence of values per name in ``columns``,
        into ``database.table`` (the sink's path: no row-to-column transpose)."""

    def query(self, sql: str, *, readonly: bool = False) -> tuple[list[str], Rows]:
        """Run ``sql``; return column names and rows."""

    def close(self) -> None: ...


def check_read_only(sql: str, max_len: int = 20_000) -> str:
    """Accept one read-only statement, or raise QueryRejected saying why.

    >>> check_read_only("SELECT 1;")
    'SELECT 1'
    >>> check_read_only("DROP TABLE x")
    Traceback (most recent call last):
    ...
    autosteer.errors.QueryRejected: only SELECT/WITH/SHOW/DESCRIBE/EXISTS/EXPLAIN queries are allowed here; got 'DROP ...'
    """
    text = sql.strip()
    if len(text) > max_len:
        raise QueryRejected(f"query is {len(text)} characters; the limit is {max_len}")
    text = text.rstrip(";").strip()
    if not text:
        raise QueryRejected("empty query")
    bare = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)  # drop string literals
    bare = re.sub(r"--[^\n]*|/\*.*?\*/", " ", bare, flags=re.S)
    if ";" in bare:
        raise QueryRejected("only one statement per query; remove the ';'")
    first = bare.split(None, 1)[0].lower()
    if first not in READ_PREFIXES:
        raise QueryRejected("only SELECT/WITH/SHOW/DESCRIBE/EXISTS/EXPLAIN queries are allowed "
                            f"here; got {first.upper()!r} ...".replace("' ...", " ...'"))
    if re.search(r"\binto\s+outfile\b", bare, flags=re.I):
        raise QueryRejected("INTO OUTFILE is not allowed here")
    return text


def transpose(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Rows (tuples in ``columns`` order) -> one sequence of values per column.

    >>> transpose(["a", "b"], [(1, "x"), (2, "y")])
    [(1, 2), ('x', 'y')]
    """
    if not rows:
        return [() for _ in columns]
    try:
        return list(zip(*rows, strict=True))
    except ValueError as exc:
        raise ValueError(f"rows of unequal length for columns {list(columns)}: {exc}") from exc


def count_rows(columns: Sequence[str], data: Sequence[Sequence[Any]]) -> int:
    """How many rows ``data`` (one sequence per name in ``columns``) holds; ValueError
    when it does not hold one sequence per column.

    >>> count_rows(["a", "b"], [(1, 2), ("x", "y")])
    2
    >>> count_rows(["a", "b"], [(1, 2)])
    Traceback (most recent call last):
    ...
    ValueError: 1 columns of values for 2 names ['a', 'b']: give one sequence per column
    """
    if len(data) != len(columns):
        raise ValueError(f"{len(data)} columns of values for {len(columns)} names "
                         f"{list(columns)}: give one sequence per column")
    return len(data[0]) if data else 0


class ServerStore:
    """A ClickHouse server reached with clickhouse-driver (native protocol)."""

    def __init__(self, url: str, *, query_timeout_s: float = 30.0) -> None:
        from clickhouse_driver import Client

        parsed = urlparse(url)
        if parsed.scheme not in ("clickhouse", "clickhouses"):
            raise ConfigError(f"AUTOSTEER_CLICKHOUSE_URL must look like "
                              f"clickhouse://user:password@host:9000/database; got scheme {parsed.scheme!r}")
        self.database = (parsed.path or "/autosteer").strip("/") or "autosteer"
        self._safe_url = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 9000}/{self.database}"
        # connect to the server's default database: ours may not exist yet
        server_url = parsed._replace(path="/default").geturl()
        self._client = Client.from_url(server_url)
        self._client.connection.send_receive_timeout = query_timeout_s
        self._lock = threading.Lock()  # a clickhouse-driver Client is not thread-safe

    def __repr__(self) -> str:  # never shows the password
        return f"ServerStore({self._safe_url})"

    def _execute(self, sql: str, *args: Any, **kw: Any) -> Any:
        from clickhouse_driver.errors import Error as DriverError

        with self._lock:
            try:
                return self._client.execute(sql, *args, **kw)
            except (DriverError, OSError, EOFError) as exc:
                self._client.disconnect()
                raise StoreError(f"ClickHouse at {self._safe_url}: {exc}") from exc

    def setup(self) -> None:
        for stmt in ddl(self.database):
            self._execute(stmt)
        migrate(self)
        self._use_own_database()

    def _use_own_database(self) -> None:
        """Once our database exists, make it the session's default, so that a query may
        name ``telemetry_windows`` without ``autosteer.`` in front (the client sends the
        database when it connects: switch, then reconnect on the next query)."""
        conn = self._client.connection
        if conn.database == self.database:
            return
        rows = self._execute("SELECT count() FROM system.databases WHERE name = %(name)s",
                             {"name": self.database})
        if rows and rows[0][0]:
            with self._lock:
                conn.database = self.database
                self._client.disconnect()

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.insert_columns(table, columns, transpose(columns, rows))

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> None:
        if count_rows(columns, data):  # columnar: clickhouse-driver skips its own transpose
            self._execute(f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES",
                          data, columnar=True)

    def query(self, sql: str, *, readonly: bool = False) -> tuple[list[str], Rows]:
        settings: dict[str, Any] = {}
        self._use_own_database()
        if readonly:
            sql = check_read_only(sql)
            settings = {"readonly": 2, "max_execution_time": 30, "max_result_rows": 100_000,
                        "result_overflow_mode": "break"}
        try:
            rows, meta = self._execute(sql, with_column_types=True, settings=settings)
        except StoreError as exc:
            if self._client.connection.database != self.database:  # it was not there
                raise StoreError(f"{exc}\n(the telemetry database {self.database!r} does not "
                                 "exist yet: a worker with the sink role creates it)") from exc
            raise
        return [m[0] for m in meta], [tuple(r) for r in rows]

    def close(self) -> None:
        self._client.disconnect()


class EmbeddedStore:
    """Current ClickHouse in-process (chdb) on a data directory; one process at a time."""

    _INT = re.compile(r"^(Nullable\()?U?Int(8|16|32|64|128|256)\)?$")

    def __init__(self, path: Path, database: str = "autosteer") -> None:
        try:
            from chdb import session as chs
        except ImportError as exc:
            raise ConfigError("the embedded store needs chdb: pip install chdb") from exc
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.database = database
        try:
            self._sess = chs.Session(str(path))
        except Exception as exc:  # chdb raises plain RuntimeError on a locked directory
            raise StoreError(
                f"cannot open the embedded ClickHouse data at {path}: {exc}. Another process "
                "(a running worker?) holds it; query through that worker with `autosteer sql`, "
                "which uses its /sql endpoint"
            ) from exc
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EmbeddedStore({self.path})"

    def _run(self, sql: str, fmt: str = "CSV") -> str:
        with self._lock:
            try:
                res = self._sess.query(sql, fmt)
            except Exception as exc:
                raise StoreError(f"chdb at {self.path}: {exc}") from exc
        return res.bytes().decode() if hasattr(res, "bytes") else str(res)

    def setup(self) -> None:
        for stmt in ddl(self.database):
            self._run(stmt)
        migrate(self)
        self._use_own_database()

    _using: str | None = None  # the database the session USEs

    def _use_own_database(self) -> None:
        """Once our database exists, make it the session's default (``USE``), so that a
        query may name ``telemetry_windows`` without the database in front (again after
        ``database`` changes, as the server store's connection does)."""
        if self._using == self.database:
            return
        try:
            self._run(f"USE {self.database}")
        except StoreError:
            return  # not set up yet: qualified names still work, unqualified ones say why
        self._using = self.database

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.insert_columns(table, columns, transpose(columns, rows))

    def insert_columns(self, table: str, columns: Sequence[str],
                       data: Sequence[Sequence[Any]]) -> None:
        if not count_rows(columns, data):
            return
        # one JSON object of whole columns: one json.dumps call, not one per row
        body = json.dumps(dict(zip(columns, data, strict=True)))
        self._run(f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) "
                  f"FORMAT JSONColumns\n{body}")

    def query(self, sql: str, *, readonly: bool = False) -> tuple[list[str], Rows]:
        self._use_own_database()
        if readonly:
            sql = check_read_only(sql)
            sql = f"{sql}\nSETTINGS readonly = 2, max_execution_time = 30" if sql.split(None, 1)[0].lower() in ("select", "with") and not re.search(r"\bsettings\b", sql, re.I) else sql
        out = self._run(sql, "JSONCompact").strip()
        if not out:
            return [], []
        doc = json.loads(out)
        meta = doc.get("meta", [])
        names = [m["name"] for m in meta]
        ints = [bool(self._INT.match(m["type"])) for m in meta]
        rows = [tuple(int(v) if isint and isinstance(v, str) else v
                      for v, isint in zip(row, ints, strict=True)) for row in doc.get("data", [])]
        return names, rows

    def close(self) -> None:
        with self._lock:
            close = getattr(self._sess, "close", None)
            if close:
                close()


def migrate(store: TelemetryStore) -> list[str]:
    """Add the columns a table made by an older autosteer lacks (``CREATE TABLE IF NOT
    EXISTS`` keeps an old table as it is). Returns the statements it ran."""
    from autosteer.telemetry.schema import TABLES

    ran = []
    for table in TABLES:
        _, rows = store.query(f"DESCRIBE TABLE {store.database}.{table.name}")
        have = {r[0] for r in rows}
        for name, typ in table.typed_columns:
            if name not in have:
                stmt = f"ALTER TABLE {store.database}.{table.name} ADD COLUMN {name} {typ}"
                store.query(stmt)
                ran.append(stmt)
    if ran:
        log.warning("telemetry schema upgraded: %s", "; ".join(ran))
    return ran


def open_store(settings: Settings) -> TelemetryStore:
    if settings.store == "embedded":
        return EmbeddedStore(settings.chdb_path)
    return ServerStore(settings.clickhouse_url)
