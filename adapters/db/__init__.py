"""Databases behind one contract (``adapters.db.base.Executor``), chosen by URL scheme.

``DatabaseMap`` reads the ``--database`` option: one URL for every record, several
``db_id=URL`` pairs, or a URL template containing ``{db_id}``.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any, NamedTuple, Optional
from urllib.parse import quote, urlsplit

from adapters.db.base import BadDatabaseSetting, DatabaseUnavailable, Executor, display_url, redact

__all__ = [
    "BadDatabaseSetting",
    "DatabaseMap",
    "DatabaseUnavailable",
    "Executor",
    "InvalidDbId",
    "dialect_for_url",
    "display_url",
    "open_executor",
    "redact",
]

# scheme -> (module, class, sqlglot dialect)
_BACKENDS: dict[str, tuple[str, str, str]] = {
    "sqlite": ("adapters.db.sqlite", "SqliteExecutor", "sqlite"),
    "duckdb": ("adapters.db.duckdb", "DuckDbExecutor", "duckdb"),
    "postgresql": ("adapters.db.postgres", "PostgresExecutor", "postgres"),
    "postgres": ("adapters.db.postgres", "PostgresExecutor", "postgres"),
    "mysql": ("adapters.db.mysql", "MySqlExecutor", "mysql"),
    "mariadb": ("adapters.db.mysql", "MySqlExecutor", "mysql"),
}


#: What a ``db_id`` may be where it goes into a ``{db_id}`` URL: a name, nothing that could add a URL
#: part or a libpq keyword (no ``?&/%@=:#``, spaces, quotes), not starting with ``.`` or ``-``.
_DB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class InvalidDbId(LookupError):
    """A record's ``db_id`` cannot name a database of a ``{db_id}`` URL: it is data, never URL syntax."""


def check_db_id(db_id: str) -> str:
    """``db_id`` if it is a plain name that may go into a ``{db_id}`` URL; ``InvalidDbId`` otherwise.

    >>> check_db_id("car_dealership-2.v1")
    'car_dealership-2.v1'
    >>> check_db_id("rel_pg?host=127.0.0.1&port=18901")
    Traceback (most recent call last):
    ...
    adapters.db.InvalidDbId: db_id 'rel_pg?host=127.0.0.1&port=18901' is not a plain name (letters, digits, _ . -)
    """
    if not _DB_ID.fullmatch(db_id):
        raise InvalidDbId(f"db_id {db_id[:80]!r} is not a plain name (letters, digits, _ . -)")
    return db_id


def check_url(url: str) -> str:
    """``url``, or ``BadDatabaseSetting`` (showing no part of its user information) when a parser could choke on it.

    libpq and drivers quote the token they cannot parse: a password with ``%zz`` or a
    raw ``@`` would reach the message (and stderr) whole or in part. So those are
    refused here, before anything else parses the URL, with the user information
    masked entirely.

    >>> check_url("postgresql://bob:p%40ss@db/x")
    'postgresql://bob:p%40ss@db/x'
    >>> check_url("postgresql://bob:p@ss@db/x")
    Traceback (most recent call last):
    ...
    adapters.db.base.BadDatabaseSetting: database URL 'postgresql://***@db/x' has a raw '@' or '%' in its user name or password: percent-encode it (@ is %40, % is %25)
    """
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    if at and ("@" in userinfo or _BAD_PERCENT.search(userinfo)):
        masked = f"{head}://***@{rest[len(userinfo) + 1:]}"
        raise BadDatabaseSetting(f"database URL {masked!r} has a raw '@' or '%' in its user name or password: "
                        "percent-encode it (@ is %40, % is %25)")
    return url


def _scheme(url: str) -> str:
    check_url(url)
    scheme = urlsplit(url).scheme.lower().split("+", 1)[0]
    if scheme not in _BACKENDS:
        known = ", ".join(sorted(_BACKENDS))
        raise BadDatabaseSetting(f"unsupported database URL {display_url(url)!r}: scheme must be one of {known}")
    return scheme


def dialect_for_url(url: str) -> str:
    """The sqlglot dialect of the database a URL points to."""
    return _BACKENDS[_scheme(url)][2]


def open_executor(url: str, **kwargs: Any) -> Executor:
    """Build (but do not connect) the executor for ``url``."""
    module_name, class_name, _ = _BACKENDS[_scheme(url)]  # checks the URL before any driver parses it
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BadDatabaseSetting(f"{_scheme(url)} databases are not supported by this installation: {error}") from error
    return getattr(module, class_name)(url, **kwargs)


class DatabaseMap(NamedTuple):
    """Which database URL a record's ``db_id`` runs on.

    >>> DatabaseMap.parse("sqlite:///a.db").url_for("anything")
    'sqlite:///a.db'
    >>> DatabaseMap.parse("x=sqlite:///x.db,y=duckdb:///y.duckdb").url_for("y")
    'duckdb:///y.duckdb'
    >>> DatabaseMap.parse("postgresql://u@h/{db_id}").url_for("geography")
    'postgresql://u@h/geography'

    A ``db_id`` is data: it selects among databases and never adds to a URL. Into a
    template goes only a plain name (``check_db_id``); anything else is ``InvalidDbId``.
    An id no ``db_id=URL`` entry names has no URL (None: the record's ``no_database``).

    >>> DatabaseMap.parse("mysql://u:pw@h/{db_id}").url_for("x@evil:1/y")
    Traceback (most recent call last):
    ...
    adapters.db.InvalidDbId: db_id 'x@evil:1/y' is not a plain name (letters, digits, _ . -)
    """

    default: Optional[str] = None
    by_id: tuple[tuple[str, str], ...] = ()
    template: Optional[str] = None

    @classmethod
    def parse(cls, spec: str) -> "DatabaseMap":
        spec = spec.strip()
        if not spec:
            raise BadDatabaseSetting("--database is empty")
        if "{db_id}" in spec:
            _scheme(spec)
            return cls(template=spec)
        head = spec.split(",", 1)[0]
        if "=" in head and "://" not in head.split("=", 1)[0]:
            pairs = []
            for item in spec.split(","):
                db_id, sep, url = item.partition("=")
                if not sep or not db_id.strip() or not url.strip():
                    raise BadDatabaseSetting(f"--database entry {redact(item)!r} is not db_id=URL")
                _scheme(url.strip())
                pairs.append((db_id.strip(), url.strip()))
            return cls(by_id=tuple(sorted(pairs)))
        _scheme(spec)
        return cls(default=spec)

    def url_for(self, db_id: Optional[str]) -> Optional[str]:
        """The URL for ``db_id``, or None when no database serves it."""
        if self.default:
            return self.default
        if self.template:
            if not db_id:
                return None
            return self.template.replace("{db_id}", quote(check_db_id(db_id), safe=""))
        return dict(self.by_id).get(db_id or "")

    def known_urls(self) -> list[str]:
        """URLs that can be checked before the run (templates need ids first)."""
        if self.default:
            return [self.default]
        return [url for _, url in self.by_id]

    def dialect(self) -> Optional[str]:
        """The dialect shared by every database in the map (None if they differ)."""
        urls = self.known_urls() or ([self.template] if self.template else [])
        dialects = {dialect_for_url(u) for u in urls}
        return dialects.pop() if len(dialects) == 1 else None


def password_from_env(name: Optional[str]) -> Optional[str]:
    """The password held in environment variable ``name`` (``BadDatabaseSetting`` if it is unset)."""
    if not name:
        return None
    if name not in os.environ:
        raise BadDatabaseSetting(f"--database_password_env names {name}, but that environment variable is not set")
    return os.environ[name]
