"""Field rules, one small check per concern. Each raises the exception of its result code.

Form values arrive as ``str | None``: None means the field was absent (or sent as a file where text was
expected), which the checks treat the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from calendar import monthrange

from imagecloud.errors import InvalidIdentifier, InvalidParameter

IDENTIFIER = re.compile(r"[A-Za-z0-9@_.]{3,50}")
IDENTIFIER_CHARS = re.compile(r"[A-Za-z0-9@_.]+")
CHANNEL_NAME = re.compile(r"[A-Za-z0-9@_.\-]{1,64}")
USER_NAME = CHANNEL_NAME
APP_KEY_NAME = CHANNEL_NAME
_DATE = re.compile(r"([0-9]{4})([0-9]{2})?([0-9]{2})?")
_UINT = re.compile(r"[0-9]{1,18}")


def required(value: str | None, field: str) -> str:
    if value is None or value == "":
        raise InvalidParameter(f"{field} is missing")
    return value


def channel_name(value: str | None) -> str:
    """A channel name as given by a caller who refers to a channel.

    A name that breaks the naming rule cannot exist, so it gets 20003 from the lookup; only a missing
    value is 20002.
    """
    return required(value, "channel")


def new_channel_name(value: str | None) -> str:
    name = required(value, "channel")
    if not CHANNEL_NAME.fullmatch(name):
        raise InvalidParameter("channel name must match ^[A-Za-z0-9@_.-]{1,64}$")
    return name


def user_name(value: str) -> str:
    if not USER_NAME.fullmatch(value):
        raise InvalidParameter("user name must match ^[A-Za-z0-9@_.-]{1,64}$")
    return value


def app_key_name(value: str) -> str:
    if not APP_KEY_NAME.fullmatch(value):
        raise InvalidParameter("app key name must match ^[A-Za-z0-9@_.-]{1,64}$")
    return value


def identifier(value: str) -> str:
    # fullmatch with an ASCII-only class: unicode digits or letters, spaces and newlines all fail.
    if not IDENTIFIER.fullmatch(value):
        raise InvalidIdentifier(f"identifier {value!r} breaks ^[A-Za-z0-9@_.]+$, 3 to 50 characters")
    return value


def identifier_prefix(value: str | None) -> str:
    """An identifier search prefix (extension): empty for none, else 1 to 50 identifier characters."""
    if not value:
        return ""
    if len(value) > 50 or not IDENTIFIER_CHARS.fullmatch(value):
        raise InvalidParameter("prefix must match ^[A-Za-z0-9@_.]{1,50}$")
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def metadata(value: str | None, max_bytes: int, *, sent_as_file: bool = False) -> str | None:
    """Optional JSON document, returned later exactly as sent. Empty means absent.

    A file part named ``metadata`` is refused rather than read as absent: dropping it silently would store
    a target without the metadata its owner believes was sent.
    """
    if sent_as_file:
        raise InvalidParameter("metadata must be a text field, not a file")
    if value is None or value == "":
        return None
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidParameter(f"metadata is larger than {max_bytes} bytes")
    try:
        # NaN and Infinity are Python extensions, not JSON; other JSON clients could not read them back.
        json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidParameter("metadata is not valid JSON") from exc
    if "\x00" in value:
        raise InvalidParameter("metadata contains a NUL character")
    return value


def non_negative_int(value: str | None, field: str, default: int, maximum: int | None = None) -> int:
    if value is None or value == "":
        return default
    if not _UINT.fullmatch(value):
        raise InvalidParameter(f"{field} must be a non-negative integer")
    number = int(value)
    if maximum is not None and number > maximum:
        raise InvalidParameter(f"{field} must be at most {maximum}")
    return number


def positive_int(value: str | None, field: str, default: int, maximum: int) -> int:
    number = non_negative_int(value, field, default, maximum)
    if number < 1:
        raise InvalidParameter(f"{field} must be at least 1")
    return number


def date_range(start: str | None, end: str | None, max_days: int) -> tuple[dt.date, dt.date]:
    """Parse ``yyyy``/``yyyyMM``/``yyyyMMdd`` bounds: a short start is the first day, a short end the last."""
    first = _parse_date(required(start, "startdate"), "startdate", at_end=False)
    last = _parse_date(required(end, "enddate"), "enddate", at_end=True)
    if first > last:
        raise InvalidParameter("startdate is after enddate")
    if (last - first).days + 1 > max_days:
        raise InvalidParameter(f"date range longer than {max_days} days")
    return first, last


def _parse_date(value: str, field: str, *, at_end: bool) -> dt.date:
    match = _DATE.fullmatch(value)
    if not match or (match.group(2) is None and match.group(3) is not None):
        raise InvalidParameter(f"{field} must be yyyy, yyyyMM or yyyyMMdd")
    year = int(match.group(1))
    month_text, day_text = match.group(2), match.group(3)
    try:
        if month_text is None:
            return dt.date(year, 12, 31) if at_end else dt.date(year, 1, 1)
        month = int(month_text)
        if day_text is None:
            if not 1 <= month <= 12:
                raise ValueError("month out of range")
            return dt.date(year, month, monthrange(year, month)[1] if at_end else 1)
        return dt.date(year, month, int(day_text))
    except ValueError as exc:
        raise InvalidParameter(f"{field} is not a real date") from exc
