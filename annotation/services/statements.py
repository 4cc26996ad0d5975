"""The annotator hot path's named SQL statements and the one way to run them.

Each statement is a ``.sql`` file beside this module (``sql/``), read once at import, with
a dataclass for its parameters and one for its row: the portable ORM path of the same
step takes and returns the same dataclasses, so the two paths cannot drift apart in
what they exchange. ``use_fast_path`` is the seam that chooses between them (tests force
the portable path on PostgreSQL through it).
"""

import dataclasses
import re
import time
from contextlib import nullcontext
from importlib.resources import files
from typing import Any, Generic, TypeVar

import psycopg
from django.db import connection, transaction
from psycopg.rows import class_row

P = TypeVar("P")
R = TypeVar("R")


def use_fast_path() -> bool:
    """Whether the steps run as the PostgreSQL statements (else through the ORM)."""
    return connection.vendor == "postgresql"


def statement_scope():
    """A savepoint when called inside a transaction (so a refused statement can be
    recovered from); nothing otherwise, since one statement is atomic by itself."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


@dataclasses.dataclass(frozen=True)
class Statement(Generic[P, R]):
    """One named statement: ``params`` fill its ``%(name)s`` placeholders, each result row
    becomes a ``row``.

    The placeholders are turned into PostgreSQL's own (``$1`` ...) once, at load, and the
    statement runs on a ``RawCursor``: psycopg would otherwise parse the text for
    placeholders on every run, since it caches that parse only for queries under 4 KB
    and these, with their comments, are longer (about 0.1 ms per request).
    """

    name: str
    params: type[P]
    row: type[R]
    sql: str
    raw_sql: str = ""  # ``sql`` with $n placeholders, in ``params``' field order

    @classmethod
    def load(cls, name: str, params: type[P], row: type[R]) -> "Statement[P, R]":
        sql = files("annotation.services").joinpath("sql", f"{name}.sql").read_text("utf-8")
        names = [field.name for field in dataclasses.fields(params)]

        def placeholder(match: re.Match) -> str:
            if match.group(1) not in names:
                raise ValueError(f"{name}.sql: {match.group(0)} is no field of {params.__name__}")
            return f"${names.index(match.group(1)) + 1}"

        unused = [n for n in names if f"%({n})s" not in sql]
        if unused:
            # An unused field would be a $n of no known type, refused only when prepared.
            raise ValueError(f"{name}.sql uses no placeholder for {', '.join(unused)}")
        if "%%" in sql:
            raise ValueError(f"{name}.sql: write % as such (the statement is not formatted)")
        raw_sql = re.sub(r"%\((\w+)\)s", placeholder, sql)
        return cls(name=name, params=params, row=row, sql=sql, raw_sql=raw_sql)

    def run(self, params: P, *, savepoint: bool = True) -> R | None:
        """Run as a server-side prepared statement; its first row (``None`` if none).

        Inside a transaction it runs in a savepoint (``statement_scope``) unless
        ``savepoint`` is false: for a caller whose transaction may as well fail whole
        with the statement (it saves two round trips).

        psycopg prepares a statement per connection after a few runs, so PostgreSQL plans
        these CTEs once per connection instead of on every request. Errors come out as
        Django's (``IntegrityError``), as from any Django cursor, and the statement is
        logged where Django logs its own queries (``assertNumQueries``, DEBUG).
        """
        if not isinstance(params, self.params):
            raise TypeError(f"{self.name} takes {self.params.__name__}, not {type(params)}")
        values: list[Any] = [getattr(params, field.name) for field in dataclasses.fields(params)]
        connection.ensure_connection()
        started = time.monotonic()
        try:
            with (
                statement_scope() if savepoint else nullcontext(),
                connection.wrap_database_errors,
                psycopg.RawCursor(connection.connection, row_factory=class_row(self.row)) as cursor,
            ):
                cursor.execute(self.raw_sql, values, prepare=True)
                return cursor.fetchone()
        finally:
            if connection.queries_logged:
                elapsed = time.monotonic() - started
                connection.queries_log.append(
                    {"sql": f"-- {self.name}.sql\n{self.sql}", "time": f"{elapsed:.3f}"}
                )
