"""App keys (contract §1, §5): named, search-only keys an owner gives to apps and web pages.

An app key travels in the vendor's ``secretkey`` field with the owner's ``username``, so vendor clients
need no change. It opens FindImage and GetImage only (optionally only on listed channels); every other
use case authenticates with the owner's secret key alone, so an app key is a wrong key there (20001).
Only its sha256 is stored; it is shown once, at creation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from imagecloud.errors import ChannelNotFound, InvalidParameter, NotYourChannel, WrongCredentials
from imagecloud.service import validation as check
from imagecloud.service.auth import hash_key, key_matches, new_secret_key
from imagecloud.service.ratelimit import RateLimiter
from imagecloud.storage import Database, User, users
from imagecloud.storage import appkeys as store
from imagecloud.storage import channels as channel_rows

# Tells a reader of a page's source (or of a log) that this key can only search.
KEY_PREFIX = "app_"

Authenticate = Callable[[Session, str | None, str | None], User]


@dataclass(frozen=True)
class Reader:
    """Who searches: the owner with the secret key (``app_key`` None) or one of the owner's app keys."""

    user: User
    app_key: str | None = None
    # None: every channel the owner has, now or later.
    channels: frozenset[str] | None = None

    def may_search(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels


@dataclass(frozen=True)
class AppKeyInfo:
    name: str
    channels: list[str]
    created: dt.datetime

    def as_json(self) -> dict[str, Any]:
        created = self.created.replace(microsecond=0).isoformat() + "Z"
        return {"name": self.name, "channels": self.channels, "created": created}


def parse_channels(value: str | None) -> list[str]:
    """``channels`` of CreateAppKey: comma-separated names, blanks around them ignored; none means all."""
    if not value:
        return []
    return sorted({name.strip() for name in value.split(",") if name.strip()}, key=str.encode)


class AppKeys:
    def __init__(self, db: Database, authenticate: Authenticate, rate_limiter: RateLimiter) -> None:
        self.db = db
        # The owner check (secret key only) of the service, shared so both count against one rate budget.
        self._owner = authenticate
        self._rate_limiter = rate_limiter

    # ------------------------------------------------------------------ who is searching

    def reader(self, session: Session, username: str | None, secretkey: str | None) -> Reader:
        """The caller of FindImage / GetImage: the owner's secret key or one of the owner's app keys."""
        if not username or not secretkey:
            raise WrongCredentials("missing username or secretkey")
        user = users.by_name(session, username)
        if key_matches(secretkey, user.key_hash if user is not None else None) and user is not None:
            found = Reader(user)
        else:
            key = store.by_hash(session, user.id, hash_key(secretkey)) if user is not None else None
            if key is None or user is None:
                raise WrongCredentials("unknown user or wrong key")
            channels = store.channels_of(key)
            found = Reader(user, key.name, frozenset(channels) if channels else None)
        self._rate_limiter.acquire(user.name)
        return found

    # ------------------------------------------------------------------ operator (CLI)

    def create(self, username: str, name: str, channels: Sequence[str] = ()) -> str:
        with self.db.session() as session:
            return self._create(session, self._user(session, username), name, list(channels))

    def keys(self, username: str) -> list[AppKeyInfo]:
        with self.db.session() as session:
            return self._list(session, self._user(session, username))

    def revoke(self, username: str, name: str) -> None:
        with self.db.session() as session:
            self._revoke(session, self._user(session, username), name)

    def _user(self, session: Session, name: str) -> User:
        user = users.by_name(session, name)
        if user is None:
            raise InvalidParameter(f"no user {name!r}")
        return user

    # ------------------------------------------------------------------ endpoints (owner's secret key only)

    def api_create(
        self, username: str | None, secretkey: str | None, name: str | None, channels: str | None
    ) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._owner(session, username, secretkey)
            key_name = check.required(name, "name")
            key = self._create(session, user, key_name, parse_channels(channels))
        return {"name": key_name, "appkey": key}

    def api_list(self, username: str | None, secretkey: str | None) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._owner(session, username, secretkey)
            return {"keys": [info.as_json() for info in self._list(session, user)]}

    def api_revoke(self, username: str | None, secretkey: str | None, name: str | None) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._owner(session, username, secretkey)
            self._revoke(session, user, check.required(name, "name"))
        return {}

    # ------------------------------------------------------------------ the rules

    def _create(self, session: Session, user: User, name: str, channels: list[str]) -> str:
        check.app_key_name(name)
        for channel in channels:
            self._check_owned(session, user, channel)
        if store.exists(session, user.id, name):
            raise InvalidParameter(f"an app key named {name!r} exists")
        key = KEY_PREFIX + new_secret_key()
        store.insert(session, user.id, name, hash_key(key), channels)
        return key

    def _check_owned(self, session: Session, user: User, name: str) -> None:
        owner = channel_rows.owner_of(session, name)
        if owner is None:
            raise ChannelNotFound(f"no channel {name!r}")
        if owner != user.id:
            raise NotYourChannel(f"channel {name!r} belongs to another user")

    def _list(self, session: Session, user: User) -> list[AppKeyInfo]:
        return [
            AppKeyInfo(name=key.name, channels=store.channels_of(key), created=key.created_at)
            for key in store.of_user(session, user.id)
        ]

    def _revoke(self, session: Session, user: User, name: str) -> None:
        if not store.remove(session, user.id, name):
            raise InvalidParameter(f"no app key named {name!r}")
