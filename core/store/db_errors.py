"""Database driver errors as memscribe's errors: transient (retried) or permanent
(dead-lettered), with texts that never carry message content."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import sqlalchemy.exc

from core.errors import PermanentError, TransientError


def describe(error: BaseException | None) -> str:
    """A driver error without its DETAIL: PostgreSQL's detail quotes the failing row, i.e.
    message content, which must never reach logs or dead-letter records."""
    if error is None:
        return "unknown database error"
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        code = getattr(error, "pgcode", None)
        return f"{code} {primary}" if code else str(primary)
    lines = str(error).strip().splitlines()
    return lines[0] if lines else error.__class__.__name__


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into memscribe's transient/permanent classes."""
    try:
        yield
    except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.DataError) as exc:
        raise PermanentError(describe(exc.orig)) from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        raise TransientError(describe(exc.orig)) from None
    except sqlalchemy.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise TransientError(describe(exc.orig)) from None
        raise PermanentError(describe(exc.orig)) from None
    except (psycopg2.IntegrityError, psycopg2.DataError) as exc:
        # Errors of the raw psycopg2 cursor (COPY) are not wrapped by SQLAlchemy.
        raise PermanentError(describe(exc)) from None
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        raise TransientError(describe(exc)) from None
