"""``sbcntrctl loadtest-rows``: count, or delete, the rows load runs wrote in a SQLite database.

Load runs mark what they write (:mod:`sbcntrctl.loadtest.runinfo`): items
have the name ``sbcntr-loadtest``, notifications the category ``loadtest``,
and both a title that starts with the run id. This command works on the
development database (``data/backend.sqlite3``, SQLite); for PostgreSQL the
same two statements are in loadtest/README.md.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from sbcntrctl.loadtest.runinfo import ITEM_NAME, NOTIFICATION_CATEGORY

TABLES = (("items", "name", ITEM_NAME), ("notifications", "category", NOTIFICATION_CATEGORY))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        type=Path,
        default=Path("data/backend.sqlite3"),
        help="the backend's SQLite file (default: the development database)",
    )
    parser.add_argument("--run-id", help="only this run's rows (default: every load run's)")
    parser.add_argument("--delete", action="store_true", help="delete them (default: count)")


def marked_rows(
    connection: sqlite3.Connection, run_id: str | None, *, delete: bool
) -> dict[str, int]:
    """Rows of each table the load runs wrote (of ``run_id`` only, when given)."""
    found = {}
    for table, column, marker in TABLES:
        where = f"{column} = ?"  # table and column names are constants above
        values: list[str | int] = [marker]
        if run_id:
            where += " AND substr(title, 1, ?) = ?"
            values += [len(run_id) + 1, f"{run_id} "]
        verb = "DELETE" if delete else "SELECT count(*)"
        cursor = connection.execute(f"{verb} FROM {table} WHERE {where}", values)
        found[table] = cursor.rowcount if delete else int(cursor.fetchone()[0])
    return found


def run(args: argparse.Namespace) -> int:
    if not args.database.is_file():
        print(f"sbcntrctl loadtest-rows: {args.database}: no such database file", file=sys.stderr)
        return 2
    connection = sqlite3.connect(args.database, timeout=15)
    try:
        with connection:  # one transaction, committed at the end (rolled back on failure)
            found = marked_rows(connection, args.run_id, delete=args.delete)
    except sqlite3.DatabaseError as exc:
        print(f"sbcntrctl loadtest-rows: {args.database}: {_explain(exc)}", file=sys.stderr)
        return 2
    finally:
        connection.close()
    done = "deleted" if args.delete else "found"
    scope = f"run {args.run_id}" if args.run_id else "load runs"
    print(", ".join(f"{n} {table}" for table, n in found.items()) + f" of {scope} {done}")
    return 0


def _explain(error: sqlite3.DatabaseError) -> str:
    """What is wrong with the file, and what to give instead."""
    text = str(error)
    if text == "file is not a database":
        return "not a SQLite database (give the backend's data/backend.sqlite3)"
    if text.startswith("no such table"):
        table = text.rsplit(" ", 1)[-1]
        return f"no table {table}: not the backend's database, or not migrated (backend migrate)"
    return f"{text} (give the backend's SQLite database)"
