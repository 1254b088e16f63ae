"""Secrets stay where they were put: a database URL's password is shown as `***` wherever a
target is printed, logged or kept for display, and env values stay out of notifier payloads.

Stdlib only and cheap to import: the CLI, the store's error messages and the daemon use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
# a URL's userinfo: scheme://user:password@host, the password being everything up to the last '@'
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)(?P<password>[^/?#]*)(?P<tail>@.*)$", re.S)
# what libpq also reads from a URL's query: ?password=...
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.I)


def redact_target(target: str) -> str:
    """The database target as it may be shown: `postgresql://jr:***@host/db` for a URL with a
    password (in its userinfo or a `password=` query parameter); a path or a URL without one as
    it is."""
    if "://" not in target:
        return target
    match = _USERINFO.match(target)
    if match and match["password"]:
        target = match["head"] + MASK + match["tail"]
    return _QUERY_PASSWORD.sub(lambda m: m[1] + MASK, target)


def without_password(target: str) -> str:
    """The database target with no password at all (its userinfo password and any `password=`
    query parameter dropped): what jobs see as JOBRUNNER_DB, and what names a URL database's
    log directory. A job that connects itself reads the password where libpq does (~/.pgpass)."""
    if "://" not in target:
        return target
    match = _USERINFO.match(target)
    if match and match["password"]:
        target = match["head"][:-1] + match["tail"]
    return _QUERY_PASSWORD_PARAM.sub(lambda m: "?" if m[1] == "?" else "", target).replace("?&", "?").rstrip("?")


_QUERY_PASSWORD_PARAM = re.compile(r"([?&])password=[^&#]*", re.I)


def redact_urls(text: str) -> str:
    """Every `scheme://user:password@` in free text (an error message) with the password `***`."""
    return _ANY_USERINFO.sub(lambda m: m[1] + MASK + "@", text)


_ANY_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#\s]*:)[^/?#\s]*@")


def target_password(target: str) -> str | None:
    """The password a database URL carries (None for a path or a URL without one)."""
    if "://" not in target:
        return None
    redacted = redact_target(target)
    if redacted == target:
        return None
    try:
        password = urlsplit(target).password
    except ValueError:
        password = None
    return password or MASK  # MASK: a password= parameter; enough to say "there is one"


def redact_text(text: str, target: str) -> str:
    """`text` (a driver's error message, say) with the target's password and the target itself
    redacted, should the text repeat them."""
    redacted = redact_target(target)
    if redacted == target:
        return text
    text = text.replace(target, redacted)
    try:
        password = urlsplit(target).password
    except ValueError:
        password = None
    if password and len(password) >= 3:  # a one- or two-letter one would mask ordinary words
        text = text.replace(password, MASK)
    return text


def masked_env(env: Mapping[str, Any] | None) -> dict[str, str]:
    """A job's env for a payload: its keys, every value `***`."""
    return {key: MASK for key in (env or {})}
