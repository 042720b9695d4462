"""Database URLs with their secrets hidden, for every message, log line and stored traceback.

SQLAlchemy's ``render_as_string(hide_password=True)`` hides the password of a URL it
parses well, but three forms still leak it:

- a password in the query: ``postgresql://u@host/db?password=secret`` (libpq takes it there);
- an unencoded ``@`` in the password: ``postgresql://u:p@ss@host/db`` parses as password
  ``p`` and host ``ss@host``, so the masked form still shows ``ss``;
- a URL that does not parse at all (``postgresql//u:secret@host``, a port that is not a
  number), which callers echo back as they got it.

``mask_url`` hides all three: SQLAlchemy's parse where it is sound (one ``@``), else a
pattern that hides everything from the user-info's first ``:`` to the last ``@`` (a host
cannot hold an ``@``; hiding too much is safe, too little is not), and ``key=value``
secrets anywhere. ``scrub`` applies it to every URL in a message or a traceback, and
removes a given URL's secrets wherever else they appear.

Example:
    >>> mask_url("postgresql://me:p@ss@db.example/runs?sslmode=require")
    'postgresql://me:***@db.example/runs?sslmode=require'
"""

from __future__ import annotations

import re

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# key=value secrets: libpq's query parameters and conninfo strings (password=... host=...).
KEY_VALUE_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|sslpassword|secret|token|api_?key|access_token)(\s*=\s*)"
    r"('[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)"
)
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
MASK = "***"
SHORTEST_BARE_SECRET = 4  # a shorter secret is hidden only where it sits in a URL or key=value, not as bare text


def mask_url(url: str) -> str:
    """``url`` with its password hidden, in the user-info, in the query, and when it does not parse."""
    return KEY_VALUE_SECRET.sub(rf"\1\2{MASK}", _mask_userinfo(url))


def _mask_userinfo(url: str) -> str:
    scheme = SCHEME.match(url)
    start = scheme.end() if scheme else 0
    rest = url[start:]
    if "@" not in rest or rest.startswith("/"):
        return url  # no user-info: sqlite:///path, postgresql://host/db
    if scheme and rest.count("@") == 1:
        parsed = _parse(url)
        if parsed is not None:
            return parsed.render_as_string(hide_password=True) if parsed.password is not None else url
    userinfo, _, host = rest.rpartition("@")
    if ":" not in userinfo:
        return url  # a user name alone
    user = userinfo.partition(":")[0]
    return f"{url[:start]}{user}:{MASK}@{host}"


def _parse(url: str):
    """SQLAlchemy's parse of ``url``, or None where it cannot read it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None


def secrets_of(url: str) -> list[str]:
    """The secrets ``url`` holds: its password (as written and as decoded) and its query's secret values."""
    found = [match.group(3).strip("'\"") for match in KEY_VALUE_SECRET.finditer(url)]
    scheme = SCHEME.match(url)
    rest = url[scheme.end() if scheme else 0 :]
    if "@" in rest and not rest.startswith("/"):
        userinfo = rest.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.partition(":")[2])
        parsed = _parse(url) if scheme else None
        if parsed is not None and parsed.password:
            found.append(parsed.password)
    return sorted({s for s in found if s and s != MASK}, key=len, reverse=True)


def check_url(url: str) -> None:
    """Refuse a URL whose password holds an unencoded ``@``: SQLAlchemy would connect to the wrong host.

    ``postgresql://u:p@ss@host/db`` parses as host ``ss@host``; the driver then reports that host,
    password fragment and all. Raises ``MasbenchError`` naming the masked URL and the fix.
    """
    from masbench.errors import MasbenchError

    parsed = _parse(url) if SCHEME.match(url) else None
    if parsed is not None and "@" in (parsed.host or ""):
        raise MasbenchError(f"Invalid database URL: {mask_url(url)} (its password holds an '@': write it as %40, "
                            f"e.g. postgresql://user:p%40ss@host/db)")


def scrub(text: str, url: str | None = None) -> str:
    """``text`` (a message, a traceback) with every URL in it masked, and ``url``'s secrets removed everywhere.

    A secret of ``url`` shorter than 4 characters is removed only where it sits in a URL or a
    ``password=`` pair: replacing every ``a`` in a traceback would make it unreadable.
    """
    if url:
        text = text.replace(url, mask_url(url))
        parsed = _parse(url) if SCHEME.match(url) else None
        if parsed is not None and "@" in (parsed.host or ""):  # the driver names the host it was given: p@ss@h -> ss@h
            text = text.replace(parsed.host, f"{MASK}@{parsed.host.rpartition('@')[2]}")
        for secret in secrets_of(url):
            if len(secret) >= SHORTEST_BARE_SECRET:
                text = text.replace(secret, MASK)
    text = URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)
    return KEY_VALUE_SECRET.sub(rf"\1\2{MASK}", text)
