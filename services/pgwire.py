"""pg8000 below its public API: the one module that knows how pg8000 works inside.

Per-user reads are short enough that pg8000's dbapi layer costs more than the server: it
parses, describes and plans every statement again, commits in three round trips and sends
every parameter as text. The few things done instead (named prepared statements, several
protocol messages written before one flush, a binary parameter) use pg8000 internals, which
a minor release may change: requirements.txt pins pg8000 exactly (``PG8000_VERSION``) and
tests/test_pgwire.py fails if anything used here moves. The rest of the code imports pg8000
names from here only.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pg8000.dbapi
from pg8000.converters import make_params, timestamp_in, timestamptz_in
from pg8000.core import NULL_BYTE, SYNC_MSG, Context, _create_message, _flush, _write
from pg8000.exceptions import DatabaseError, InterfaceError

__all__ = [
    "PG8000_VERSION",
    "Binary",
    "Connection",
    "DatabaseError",
    "InterfaceError",
    "Prepared",
    "close_prepared",
    "connect",
    "execute_prepared",
    "execute_simple",
    "in_transaction",
    "is_broken",
    "mark_broken",
    "prepare",
    "read_alone",
    "tune",
    "vector_binary",
]

PG8000_VERSION = "1.31.6"  # what this module was written against; requirements.txt pins it

Connection = pg8000.dbapi.Connection

TIMESTAMP_OID = 1114
TIMESTAMPTZ_OID = 1184
_BIND = b"B"
_DATA_ROW = b"D"
_H = struct.Struct("!h")
_I = struct.Struct("!i")
_unpack_int = _I.unpack_from


def connect(**kwargs: Any) -> Connection:
    return pg8000.dbapi.connect(**kwargs)


@dataclass(frozen=True)
class Binary:
    """A parameter sent in the type's binary wire format (``typsend``/``typrecv``) instead
    of text. The statement must fix the parameter's type, e.g. ``%s::vector``."""

    data: bytes


def vector_binary(vector: np.ndarray) -> Binary:
    """pgvector's binary form of ``vector`` (vector_recv: int16 dimensions, int16 unused,
    then big-endian float4s): one numpy copy, where the text form formats and the server
    parses 384 decimal numbers."""
    values = np.asarray(vector, dtype=">f4")
    return Binary(struct.pack("!hh", values.shape[0], 0) + values.tobytes())


@dataclass(frozen=True)
class Prepared:
    """A server-side prepared statement of one connection, and how to decode its rows."""

    name: bytes
    columns: Any
    input_funcs: Any
    statement: str


def prepare(conn: Connection, sql: str, params: Sequence[Any]) -> Prepared:
    """Parse and describe ``sql`` (``%s`` placeholders) once, as a named statement."""
    statement, _ = pg8000.dbapi.convert_paramstyle("format", sql, params)
    name, columns, input_funcs = conn.prepare_statement(statement, ())
    return Prepared(name, columns, input_funcs, statement)


def close_prepared(conn: Connection, prepared: Prepared) -> None:
    conn.close_prepared_statement(prepared.name)


def execute_simple(conn: Connection, sql: str) -> list[tuple]:
    """``sql`` as written, in the simple protocol (several statements allowed; '%' is
    plain): one round trip."""
    return _rows(conn.execute_simple(sql))


def execute_prepared(
    conn: Connection,
    prepared: Prepared,
    params: Sequence[Any],
    begin: str | None = None,
    lost: Callable[[BaseException], bool] = lambda error: True,
) -> list[tuple]:
    """Bind and execute ``prepared``: one round trip. With ``begin``, the transaction's
    BEGIN goes in the same write (one round trip instead of two); if it fails, the server
    refuses the statement after it, since an aborted block runs nothing. Every reply is
    read, as in ``read_alone``, and the first error is raised."""
    contexts = [_context(prepared)]
    if begin is not None:
        conn.send_QUERY(begin)
        contexts.insert(0, Context(begin))
    _send_bind_execute(conn, prepared, params)
    _write(conn._sock, SYNC_MSG)
    _flush(conn._sock)
    _read_replies(conn, contexts, lost)
    return _rows(contexts[-1])


def read_alone(
    conn: Connection,
    begin: str,
    prepared: Prepared,
    params: Sequence[Any],
    lost: Callable[[BaseException], bool],
) -> list[tuple]:
    """``begin``, the statement and COMMIT, written together and read back together: one
    round trip instead of three. PostgreSQL runs the messages in order, and if the
    statement fails, the COMMIT after it rolls back. Every reply is read even after an
    error (the next user of the socket would otherwise read them), unless the connection
    itself is gone (``lost``); the first error is raised."""
    conn.send_QUERY(begin)
    _send_bind_execute(conn, prepared, params)
    _write(conn._sock, SYNC_MSG)  # the statement's results end here
    conn.send_QUERY("COMMIT")
    _flush(conn._sock)
    contexts = [Context(begin), _context(prepared), Context("COMMIT")]
    _read_replies(conn, contexts, lost)
    return _rows(contexts[1])


def _read_replies(
    conn: Connection, contexts: Sequence[Context], lost: Callable[[BaseException], bool]
) -> None:
    """Read the replies of several messages written together, in order. After an error the
    rest are still read (the next user of the socket would otherwise get them), unless the
    connection itself is gone; the first error is raised."""
    first_error: Exception | None = None
    for context in contexts:
        try:
            conn.handle_messages(context)
        except Exception as error:
            first_error = first_error or error
            if lost(error):
                break
    if first_error is not None:
        raise first_error


def in_transaction(conn: Connection) -> bool:
    """Whether the server reported an open transaction on ``conn`` (after the last reply)."""
    return bool(conn._in_transaction)


def mark_broken(conn: Connection) -> None:
    """Remember that ``conn`` must not be handed out again (replies may be unread)."""
    conn._broken = True  # type: ignore[attr-defined]


def is_broken(conn: Connection) -> bool:
    return bool(getattr(conn, "_broken", False))


def tune(conn: Connection) -> None:
    """Faster decoding for ``conn``'s results: timestamps (parse_timestamp) and data rows
    (decode_data_row)."""
    for oid in (TIMESTAMP_OID, TIMESTAMPTZ_OID):
        conn.register_in_adapter(oid, parse_timestamp)
    conn.message_types[_DATA_ROW] = functools.partial(decode_data_row, conn)


def decode_data_row(conn: Connection, data: bytes, context: Context) -> None:
    """pg8000's handle_DATA_ROW, in fewer interpreter steps (bytes.decode and a bound
    unpack instead of str(..., encoding=...) and an attribute lookup per column): a search's
    ten rows of 21 columns decode in about 60% of the time."""
    encoding = conn._client_encoding
    row: list[Any] = []
    append = row.append
    idx = 2
    for func in context.input_funcs:
        length = _unpack_int(data, idx)[0]
        idx += 4
        if length == -1:
            append(None)
        else:
            append(func(data[idx : idx + length].decode(encoding)))
            idx += length
    context.rows.append(row)


def parse_timestamp(text: str) -> datetime:
    """PostgreSQL's timestamp text, ~10x faster than pg8000's strptime-based default.

    Python 3.11+ reads PostgreSQL's ISO output ('2026-11-25 20:10:55.1+00') directly;
    the rare values it cannot (infinity, BC dates) go to pg8000's own parser.
    """
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return timestamptz_in(text) if "+" in text or "-" in text[10:] else timestamp_in(text)


def _context(prepared: Prepared) -> Context:
    return Context(
        columns=prepared.columns, input_funcs=prepared.input_funcs, statement=prepared.statement
    )


def _send_bind_execute(conn: Connection, prepared: Prepared, params: Sequence[Any]) -> None:
    """Bind (text parameters, or binary for ``Binary`` values) and Execute, unflushed."""
    binary = [isinstance(value, Binary) for value in params]
    if not any(binary):
        conn.send_BIND(prepared.name, make_params(conn.py_types, params))
    else:
        texts = make_params(conn.py_types, [None if b else v for v, b in zip(params, binary)])
        message = bytearray(NULL_BYTE + prepared.name)
        message += _H.pack(len(params)) + b"".join(_H.pack(int(b)) for b in binary)
        message += _H.pack(len(params))
        encoding = conn._client_encoding
        for value, text in zip(params, texts):
            data = value.data if isinstance(value, Binary) else None
            if data is None and text is not None:
                data = text.encode(encoding)
            message += _I.pack(-1) if data is None else _I.pack(len(data)) + data
        message += _H.pack(0)  # every result column as text
        _write(conn._sock, _create_message(_BIND, bytes(message)))
    conn.send_EXECUTE()


def _rows(context: Context) -> list[tuple]:
    return [] if context.rows is None else [tuple(row) for row in context.rows]
