"""The use cases behind every endpoint, and the rules they share (auth, ownership, quotas, atomicity).

Plain synchronous Python: the API layer runs these methods in worker threads. Every vendor method checks
its inputs in the contract's precedence order (20001 → 20002 → 20003 → 20004 → 20010 → 20014/20016 →
20012 → 20006 → 20007 → 20013) and returns the success body without ``returncode``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from imagecloud.config import Settings
from imagecloud.errors import (
    ChannelNotFound,
    FileTooLarge,
    IdentifierTaken,
    ImageCloudError,
    InvalidParameter,
    NotYourChannel,
    QuotaExceeded,
    TargetNotFound,
    WrongCredentials,
)
from imagecloud.service import validation as check
from imagecloud.service.appkeys import AppKeys, Reader
from imagecloud.service.auth import hash_key, key_matches, new_secret_key
from imagecloud.service.files import Files
from imagecloud.service.ratelimit import RateLimiter
from imagecloud.service.recognizer import Recognizer, TargetAnalysis
from imagecloud.service.sweep import collect_orphans
from imagecloud.storage import (
    BlobStore,
    Channel,
    Database,
    MatchCount,
    Target,
    TargetFeatures,
    User,
    searches,
)
from imagecloud.storage.blobs import BlobStoreUnavailable, new_blob_key
from imagecloud.storage.lock import DataDirLock
from imagecloud.storage.thumbnails import ThumbnailStore
from imagecloud.vision.rating import LEVEL_BANDS, MIN_KEYPOINTS, MIN_MATCHRATIO, MIN_REFOUND
from imagecloud.vision.thumbnail import stored_previews

log = logging.getLogger(__name__)

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
# At most this many similar targets are listed: enough to act on, cheap to verify.
SIMILAR_RESULTS = 5


@dataclass(frozen=True)
class Upload:
    """An uploaded file whose size is known before its bytes are read."""

    size: int
    read: Callable[[], bytes]


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    owner: str
    quota: int
    count: int


def too_large(size: int, limit: int, endpoint: str) -> str:
    """The reason of a 20006 for an upload over a byte limit, naming that limit."""
    return f"image is {size} bytes, over the {endpoint} limit of {limit} bytes ({limit / 2**20:.3g} MiB)"


class Service:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        recognizer: Recognizer,
        previews: ThumbnailStore,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.recognizer = recognizer
        self.previews = previews
        self.files = Files(db, blobs, previews, settings.max_pixels)
        # Set by whoever took the data directory's lock (``imagecloud serve``): only then may the start-up
        # sweep take every unreferenced file for garbage.
        self.data_lock: DataDirLock | None = None
        self._locks_guard = threading.Lock()
        self._channel_locks: dict[int, threading.Lock] = {}
        self.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        self.appkeys = AppKeys(db, self._authenticate, self.rate_limiter)
        self.ready = False
        if recognizer.feature_source is None:
            recognizer.feature_source = self._features_by_id

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Migrate, drop blobs no row points to (left by a crash mid-add), load the search index."""
        self.db.migrate()
        exclusive = self.data_lock is not None and self.data_lock.held
        collect_orphans(self.db, self.blobs, self.previews, exclusive=exclusive)
        counts, live = self._census()
        missing = self.recognizer.open_words(counts, live)
        if missing:
            # Targets added since the word index was last saved (or all of them, after a crash before any
            # save): their stored features are re-read and indexed by words.
            self.recognizer.add_words(self._stored_features(ids=missing))
            self.recognizer.save_words()
        self.recognizer.load(self._stored_features(skip_channels=self.recognizer.word_scopes()))
        self.ready = True
        log.info(
            "ready: %d targets indexed, %d of them from the saved index",
            len(self.recognizer),
            self.recognizer.restored,
        )

    def stop(self) -> None:
        """Orderly shutdown: save the word index so the next start reads it instead of rebuilding it."""
        if self.ready:  # a start still loading has nothing complete to save
            self.recognizer.save_words()

    def _census(self) -> tuple[dict[int, int], np.ndarray]:
        """Targets per channel, and every target id."""
        with self.db.session() as session:
            counts = {
                int(c): int(n)
                for c, n in session.execute(
                    select(Target.channel_id, func.count()).group_by(Target.channel_id)
                )
            }
            ids = np.fromiter(session.scalars(select(Target.id)), np.int64)
        return counts, ids

    def _features_by_id(self, ids: Sequence[int]) -> dict[int, bytes]:
        with self.db.session() as session:
            rows = session.execute(
                select(TargetFeatures.target_id, TargetFeatures.data).where(
                    TargetFeatures.target_id.in_(list(ids))
                )
            )
            return {int(t): bytes(d) for t, d in rows}

    def database_ok(self) -> bool:
        try:
            with self.db.session() as session:
                session.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def _stored_features(
        self, ids: Sequence[int] | None = None, skip_channels: set[int] | None = None
    ) -> Iterator[tuple[int, int, bytes]]:
        if ids is not None:
            # Chunks keep each statement's parameter list within SQLite's limit.
            for start in range(0, len(ids), 500):
                yield from self._stored_features_where(Target.id.in_(list(ids[start : start + 500])))
            return
        where = Target.channel_id.not_in(list(skip_channels)) if skip_channels else None
        yield from self._stored_features_where(where)

    def _stored_features_where(self, where: ColumnElement[bool] | None) -> Iterator[tuple[int, int, bytes]]:
        with self.db.session() as session:
            query = select(Target.channel_id, Target.id, TargetFeatures.data).join(
                TargetFeatures, TargetFeatures.target_id == Target.id
            )
            if where is not None:
                query = query.where(where)
            rows = session.execute(query.execution_options(yield_per=1000))
            yield from ((channel_id, target_id, data) for channel_id, target_id, data in rows)

    def _channel_lock(self, channel_id: int) -> threading.Lock:
        # Serialises writes inside one channel so identifier/quota checks and the insert act as one step.
        with self._locks_guard:
            return self._channel_locks.setdefault(channel_id, threading.Lock())

    # ------------------------------------------------------------------ operator actions (CLI)

    def create_user(self, name: str) -> str:
        check.user_name(name)
        key = new_secret_key()
        with self.db.session() as session:
            if session.scalar(select(User.id).where(User.name == name)) is not None:
                raise InvalidParameter(f"user {name!r} exists")
            session.add(User(name=name, key_hash=hash_key(key)))
        return key

    def rotate_key(self, name: str) -> str:
        key = new_secret_key()
        with self.db.session() as session:
            done = session.execute(update(User).where(User.name == name).values(key_hash=hash_key(key)))
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise InvalidParameter(f"no user {name!r}")
        return key

    def user_exists(self, name: str) -> bool:
        with self.db.session() as session:
            return session.scalar(select(User.id).where(User.name == name)) is not None

    def create_channel(self, name: str, owner: str, quota: int | None = None) -> ChannelInfo:
        check.new_channel_name(name)
        with self.db.session() as session:
            user = session.scalar(select(User).where(User.name == owner))
            if user is None:
                raise InvalidParameter(f"no user {owner!r}")
            return self._insert_channel(session, user, name, quota)

    def _insert_channel(self, session: Session, user: User, name: str, quota: int | None) -> ChannelInfo:
        existing = session.scalar(select(Channel).where(Channel.name == name))
        if existing is not None:
            if existing.owner_id != user.id:
                raise NotYourChannel(f"channel {name!r} belongs to another user")
            raise InvalidParameter(f"channel {name!r} exists")
        if quota is not None and quota < 0:
            raise InvalidParameter("quota must be non-negative")
        channel = Channel(name=name, owner_id=user.id, quota=self._quota(quota))
        session.add(channel)
        return ChannelInfo(name=name, owner=user.name, quota=channel.quota, count=0)

    def _quota(self, quota: int | None) -> int:
        return self.settings.default_channel_quota if quota is None else quota

    def set_quota(self, name: str, quota: int) -> None:
        if quota < 0:
            raise InvalidParameter("quota must be non-negative")
        with self.db.session() as session:
            done = session.execute(update(Channel).where(Channel.name == name).values(quota=quota))
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise ChannelNotFound(f"no channel {name!r}")

    def delete_channel(self, name: str) -> None:
        with self.db.session() as session:
            channel = session.scalar(select(Channel).where(Channel.name == name))
            if channel is None:
                raise ChannelNotFound(f"no channel {name!r}")
        self._delete_channel(channel)

    def _delete_channel(self, channel: Channel) -> None:
        with self._channel_lock(channel.id):
            self.recognizer.drop_scope(channel.id)
            with self.db.session() as session:
                keys = list(session.scalars(select(Target.blob_key).where(Target.channel_id == channel.id)))
                session.execute(delete(Channel).where(Channel.id == channel.id))
                searches.forget_channel(session, channel.owner_id, channel.name)
            for key in keys:
                self._delete_files(key)

    def list_channels(self, owner: str | None = None) -> list[ChannelInfo]:
        query = (
            select(Channel.name, User.name, Channel.quota, Channel.target_count)
            .join(User, User.id == Channel.owner_id)
            .order_by(self._bytewise(Channel.name))
        )
        if owner is not None:
            query = query.where(User.name == owner)
        with self.db.session() as session:
            return [
                ChannelInfo(name=name, owner=user, quota=quota, count=count)
                for name, user, quota, count in session.execute(query)
            ]

    # ------------------------------------------------------------------ shared rules

    def _authenticate(self, session: Session, username: str | None, secretkey: str | None) -> User:
        if not username or not secretkey:
            raise WrongCredentials("missing username or secretkey")
        user = session.scalar(select(User).where(User.name == username))
        if not key_matches(secretkey, user.key_hash if user is not None else None) or user is None:
            raise WrongCredentials("unknown user or wrong key")
        self.rate_limiter.acquire(user.name)
        return user

    def _channel(self, session: Session, name: str) -> Channel:
        channel = session.scalar(select(Channel).where(Channel.name == name))
        if channel is None:
            raise ChannelNotFound(f"no channel {name!r}")
        return channel

    def _owned_channel(self, session: Session, user: User, name: str) -> Channel:
        channel = self._channel(session, name)
        if channel.owner_id != user.id:
            raise NotYourChannel(f"channel {name!r} belongs to another user")
        return channel

    def _readable_channel(self, session: Session, reader: Reader, name: str) -> Channel:
        channel = self._owned_channel(session, reader.user, name)
        if not reader.may_search(channel.name):
            raise NotYourChannel(f"app key {reader.app_key!r} may not search channel {name!r}")
        return channel

    def _target(self, session: Session, channel: Channel, identifier: str) -> Target:
        target = session.scalar(
            select(Target).where(Target.channel_id == channel.id, Target.identifier == identifier)
        )
        if target is None:
            raise TargetNotFound(f"no target {identifier!r}")
        return target

    def _owned_target(
        self,
        session: Session,
        username: str | None,
        secretkey: str | None,
        channel: str | None,
        identifier: str | None,
    ) -> tuple[Channel, Target]:
        """The caller's target, checked in the contract's order: 20001, 20002, 20003/20004, 20010, 20014."""
        user = self._authenticate(session, username, secretkey)
        channel_name = check.channel_name(channel)
        raw_identifier = check.required(identifier, "identifier")
        owned = self._owned_channel(session, user, channel_name)
        return owned, self._target(session, owned, check.identifier(raw_identifier))

    def _bytewise(self, column: Any) -> ColumnElement[Any]:
        # The contract orders identifiers by byte order; PostgreSQL's default collation would not.
        return column.collate("C") if self.db.dialect == "postgresql" else column  # type: ignore[no-any-return]

    def _read_upload(self, upload: Upload, limit: int, endpoint: str) -> bytes:
        if upload.size > limit:
            raise FileTooLarge(too_large(upload.size, limit, endpoint))
        data = upload.read()
        if len(data) > limit:
            raise FileTooLarge(too_large(len(data), limit, endpoint))
        return data

    # ------------------------------------------------------------------ AddImage

    def add_image(
        self,
        username: str | None,
        secretkey: str | None,
        channel: str | None,
        identifier: str | None,
        metadata: str | None,
        upload: Upload,
        *,
        metadata_is_file: bool = False,
    ) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._authenticate(session, username, secretkey)
            channel_name = check.channel_name(channel)
            raw_identifier = check.required(identifier, "identifier")
            meta = check.metadata(metadata, self.settings.max_metadata_bytes, sent_as_file=metadata_is_file)
            owned = self._owned_channel(session, user, channel_name)
            ident = check.identifier(raw_identifier)
            self._check_insertable(session, owned, ident)
        data = self._read_upload(upload, self.settings.max_add_bytes, "AddImage")
        analysis = self.recognizer.analyse_target(data)
        similar = self.similar_targets(data, owned.id)
        previews = self._render_previews(data)
        target_id = self._write_target(owned, ident, meta, data, analysis, previews=previews)
        log.info("added target %s/%s as %d (level %d)", owned.name, ident, target_id, analysis.level)
        return {
            "level": analysis.level,
            "matchratio": analysis.matchratio,
            "identifier": ident,
            "similar": similar,
        }

    def similar_targets(self, data: bytes, channel_id: int) -> list[dict[str, Any]]:
        """Targets of the channel that a photo of this image would find (AddImage's ``similar``), best first.

        The new image is searched as if it were a photo, before it is stored: whatever it finds is what
        could answer instead of it. All are listed, also several that fit the same place in a photo: a
        search answers none of those, so a photo of a near-duplicate finds nothing.
        """
        try:
            query = self.recognizer.analyse_query(data)
        except ImageCloudError:  # too few photo features: nothing could be confused with it either
            return []
        matches = self.recognizer.similar(query, [channel_id], SIMILAR_RESULTS)
        if not matches:
            return []
        with self.db.session() as session:
            rows = session.execute(
                select(Target.id, Target.identifier).where(
                    Target.id.in_([m.target_id for m in matches]), Target.channel_id == channel_id
                )
            )
            names = {int(target_id): str(identifier) for target_id, identifier in rows}
        return [
            {"identifier": names[m.target_id], "score": round(float(m.score), 4)}
            for m in sorted(matches, key=lambda m: -m.score)
            if m.target_id in names
        ]

    def _check_insertable(self, session: Session, channel: Channel, identifier: str) -> None:
        taken = session.scalar(
            select(Target.id).where(Target.channel_id == channel.id, Target.identifier == identifier)
        )
        if taken is not None:
            raise IdentifierTaken(f"identifier {identifier!r} exists")
        self._check_room(session, channel)

    def _check_room(self, session: Session, channel: Channel) -> None:
        """20003 if ``channel`` was deleted, 20012 if it holds its quota."""
        row = session.execute(
            select(Channel.target_count, Channel.quota).where(Channel.id == channel.id)
        ).one_or_none()
        if row is None:
            raise ChannelNotFound("channel was deleted")
        count, quota = row
        if count >= quota:
            raise QuotaExceeded(f"channel {channel.name!r} holds {count} of {quota} targets")

    def _take_slot(self, session: Session, channel: Channel) -> None:
        """Count one more target in ``channel``, in the transaction that inserts it.

        The guard in the statement keeps the quota even when several processes add to one channel: the
        row lock of the update serialises them, and one that finds the channel full changes nothing.
        """
        taken = session.execute(
            update(Channel)
            .where(Channel.id == channel.id, Channel.target_count < Channel.quota)
            .values(target_count=Channel.target_count + 1)
        )
        if taken.rowcount == 0:  # type: ignore[attr-defined]
            self._check_room(session, channel)  # says whether it is gone or full
            raise QuotaExceeded(f"channel {channel.name!r} is full")

    def _write_target(
        self,
        channel: Channel,
        identifier: str,
        meta: str | None,
        data: bytes,
        analysis: TargetAnalysis,
        *,
        replaces: Target | None = None,
        previews: dict[int, bytes] | None = None,
    ) -> int:
        """File, row and index entry appear together or not at all; returns the new target id.

        Order: file (fsync'd) → row + features (flushed, not committed) → index → commit. Any failure before
        the commit undoes the earlier steps. A crash before the commit leaves only an unreferenced file,
        removed at the next start; the index is rebuilt from committed rows.

        With ``replaces``, the new row takes the old one's place in the same transaction; the index holds
        both for a moment, so the identifier stays findable throughout, and the old features are gone once
        this returns.

        ``previews`` (size → JPEG) are stored beside the file, so that no anonymous request ever has to
        render them.
        """
        key = new_blob_key()
        with self._channel_lock(channel.id):
            self.blobs.put(key, data)
            indexed: int | None = None
            try:
                for size, preview in (previews or {}).items():
                    self.previews.put(key, size, preview)
                with self.db.session() as session:
                    if replaces is None:
                        # Checked again under the channel lock: a concurrent add may have won the race.
                        self._check_insertable(session, channel, identifier)
                        self._take_slot(session, channel)
                    else:
                        removed = session.execute(delete(Target).where(Target.id == replaces.id))
                        if removed.rowcount == 0:  # type: ignore[attr-defined]
                            raise TargetNotFound("target was removed")
                    target = Target(
                        channel_id=channel.id,
                        identifier=identifier,
                        meta=meta,
                        level=analysis.level,
                        matchratio=analysis.matchratio,
                        width=analysis.width,
                        height=analysis.height,
                        size_bytes=len(data),
                        content_type=CONTENT_TYPES[analysis.format],
                        blob_key=key,
                    )
                    session.add(target)
                    session.flush()
                    session.add(TargetFeatures(target_id=target.id, data=analysis.features_blob))
                    session.flush()
                    self.recognizer.add(channel.id, target.id, analysis.features_blob)
                    indexed = target.id
            except BaseException:
                if indexed is not None:
                    self.recognizer.remove(channel.id, indexed)
                self._delete_files(key)
                raise
            if replaces is not None:
                self.recognizer.remove(channel.id, replaces.id)
                self._delete_files(replaces.blob_key)
            return indexed

    def _render_previews(self, data: bytes) -> dict[int, bytes]:
        return stored_previews(data, max_pixels=self.settings.max_pixels)

    def _delete_files(self, key: str) -> None:
        # Previews first: a crash in between leaves an original without a row, which the sweep finds.
        self.previews.delete(key)
        try:
            self.blobs.delete(key)
        except BlobStoreUnavailable as error:
            # No row points to it (any more): what the caller was told stays true, and the start-up sweep
            # removes the object once the store answers again.
            log.warning("original %s left for the start-up sweep: %s", key, error)

    # ------------------------------------------------------------------ bulk import (operator, CLI)

    def import_channel(self, channel: str) -> tuple[Channel, set[str]]:
        """The channel ``imagecloud import`` enrols into (20003 if there is none) and the identifiers it
        already holds, which the import skips."""
        with self.db.session() as session:
            found = self._channel(session, channel)
            present = set(session.scalars(select(Target.identifier).where(Target.channel_id == found.id)))
        return found, present

    def channel_features(self, channel_id: int) -> Iterator[tuple[int, str, bytes]]:
        """(target id, identifier, features) of every target of a channel, for the import's look-alikes."""
        with self.db.session() as session:
            rows = session.execute(
                select(Target.id, Target.identifier, TargetFeatures.data)
                .join(TargetFeatures, TargetFeatures.target_id == Target.id)
                .where(Target.channel_id == channel_id)
                .execution_options(yield_per=1000)
            )
            yield from ((int(t), str(i), bytes(d)) for t, i, d in rows)

    def add_analysed(
        self,
        channel: Channel,
        identifier: str,
        metadata: str | None,
        data: bytes,
        analysis: TargetAnalysis,
        previews: dict[int, bytes] | None = None,
    ) -> int:
        """AddImage for the operator's ``imagecloud import``, with the image analysed beforehand.

        ``channel`` comes from :meth:`import_channel`; ``analysis`` must be
        ``Recognizer.analyse_target(data)`` under this service's recognizer settings (the import runs it in
        worker processes). The rest is AddImage without authentication: the same checks in the same order
        (20002, 20010, 20016/20012, 20006; a channel deleted meanwhile is 20003) and the same write, so the
        stored target is the one AddImage would store (``previews``: ``stored_previews(data)``, made in
        the workers too). Returns the new target's id.
        """
        meta = check.metadata(metadata, self.settings.max_metadata_bytes)
        ident = check.identifier(identifier)
        if len(data) > self.settings.max_add_bytes:
            with self.db.session() as session:  # 20016/20012 come before 20006, as in AddImage
                self._check_insertable(session, channel, ident)
            raise FileTooLarge(too_large(len(data), self.settings.max_add_bytes, "AddImage"))
        # _write_target checks, under the channel lock, that the channel still exists, the identifier is free
        # and the quota has room.
        return self._write_target(channel, ident, meta, data, analysis, previews=previews)

    # ------------------------------------------------------------------ UpdateImage (extension)

    def update_image(
        self,
        username: str | None,
        secretkey: str | None,
        channel: str | None,
        identifier: str | None,
        metadata: str | None,
        upload: Upload | None,
        *,
        metadata_is_file: bool = False,
    ) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._authenticate(session, username, secretkey)
            channel_name = check.channel_name(channel)
            raw_identifier = check.required(identifier, "identifier")
            if metadata is None and upload is None and not metadata_is_file:
                raise InvalidParameter("nothing to update: give metadata and/or image")
            meta = check.metadata(metadata, self.settings.max_metadata_bytes, sent_as_file=metadata_is_file)
            owned = self._owned_channel(session, user, channel_name)
            ident = check.identifier(raw_identifier)
            old = self._target(session, owned, ident)
        if upload is None:
            with self.db.session() as session:
                done = session.execute(update(Target).where(Target.id == old.id).values(meta=meta))
                if done.rowcount == 0:  # type: ignore[attr-defined]
                    raise TargetNotFound("target was removed")
            return {"level": old.level, "matchratio": old.matchratio, "identifier": ident}
        data = self._read_upload(upload, self.settings.max_add_bytes, "AddImage/UpdateImage")
        analysis = self.recognizer.analyse_target(data)
        previews = self._render_previews(data)
        new_meta = meta if metadata is not None else old.meta
        self._write_target(owned, ident, new_meta, data, analysis, replaces=old, previews=previews)
        return {"level": analysis.level, "matchratio": analysis.matchratio, "identifier": ident}

    # ------------------------------------------------------------------ RemoveImage

    def remove_image(
        self, username: str | None, secretkey: str | None, channel: str | None, identifier: str | None
    ) -> dict[str, Any]:
        with self.db.session() as session:
            owned, target = self._owned_target(session, username, secretkey, channel, identifier)
        ident = target.identifier
        with self._channel_lock(owned.id):
            # Out of the index first: from here on the target is never matched, whatever happens next.
            self.recognizer.remove(owned.id, target.id)
            try:
                with self.db.session() as session:
                    removed = session.execute(delete(Target).where(Target.id == target.id))
                    if removed.rowcount == 0:  # type: ignore[attr-defined]
                        raise TargetNotFound("target was removed concurrently")
                    session.execute(
                        update(Channel)
                        .where(Channel.id == owned.id)
                        .values(target_count=Channel.target_count - 1)
                    )
            except TargetNotFound:
                raise
            except BaseException:
                self._reindex(owned.id, target.id)
                raise
        self._delete_files(target.blob_key)
        log.info("removed target %s/%s (%d)", owned.name, ident, target.id)
        return {}

    def _reindex(self, channel_id: int, target_id: int) -> None:
        with self.db.session() as session:
            data = session.scalar(select(TargetFeatures.data).where(TargetFeatures.target_id == target_id))
        if data is not None:
            self.recognizer.add(channel_id, target_id, data)

    # ------------------------------------------------------------------ GetImages / GetImage

    def get_images(
        self,
        username: str | None,
        secretkey: str | None,
        channel: str | None,
        position: str | None,
        count: str | None,
        prefix: str | None = None,
    ) -> dict[str, Any]:
        """``prefix`` (extension) keeps identifiers starting with it; ``totalcount`` then counts those."""
        with self.db.session() as session:
            user = self._authenticate(session, username, secretkey)
            channel_name = check.channel_name(channel)
            start = check.non_negative_int(position, "position", 0)
            size = check.positive_int(count, "count", self.settings.page_size, self.settings.max_page_size)
            wanted = check.identifier_prefix(prefix)
            owned = self._owned_channel(session, user, channel_name)
            where = [Target.channel_id == owned.id]
            total = owned.target_count
            if wanted:
                # substr, not LIKE: SQLite's LIKE ignores ASCII case and treats "_" as a wildcard.
                where.append(func.substr(Target.identifier, 1, len(wanted)) == wanted)
                total = session.scalar(select(func.count(Target.id)).where(*where)) or 0
            rows = session.execute(
                select(Target.identifier, Target.meta, Target.matchratio, Target.level, Target.blob_key)
                .where(*where)
                .order_by(self._bytewise(Target.identifier))
                .offset(start)
                .limit(size)
            )
            images = [
                {
                    "identifier": ident,
                    "metadata": meta,
                    "matchratio": ratio,
                    "level": level,
                    "imageurl": f"/files/{key}",
                }
                for ident, meta, ratio, level, key in rows
            ]
        return {"totalcount": total, "images": images}

    def get_image(
        self,
        username: str | None,
        secretkey: str | None,
        channel: str | None,
        identifier: str | None,
    ) -> dict[str, Any]:
        with self.db.session() as session:
            # Credentials are optional here, but if either is given both must be right. An app key may read.
            reader = self.appkeys.reader(session, username, secretkey) if (username or secretkey) else None
            channel_name = check.channel_name(channel)
            raw_identifier = check.required(identifier, "identifier")
            found = (
                self._readable_channel(session, reader, channel_name)
                if reader is not None
                else self._channel(session, channel_name)
            )
            ident = check.identifier(raw_identifier)
            target = self._target(session, found, ident)
        return {
            "identifier": target.identifier,
            "channel": found.name,
            "metadata": target.meta,
            "level": target.level,
            "matchratio": target.matchratio,
            "width": target.width,
            "height": target.height,
            "imageurl": f"/files/{target.blob_key}",
        }

    # ------------------------------------------------------------------ FindImage

    def find_image(
        self,
        username: str | None,
        secretkey: str | None,
        channel: str | None,
        maxresults: str | None,
        upload: Upload,
    ) -> dict[str, Any]:
        with self.db.session() as session:
            reader = self.appkeys.reader(session, username, secretkey)
            limit = check.positive_int(maxresults, "maxresults", 1, self.settings.max_find_results)
            searched = ""  # what the search counts are kept under: "" is "all channels"
            if channel:
                readable = self._readable_channel(session, reader, channel)
                scopes, searched = {readable.id}, readable.name
            else:
                owned = select(Channel.id).where(Channel.owner_id == reader.user.id)
                if reader.channels is not None:
                    owned = owned.where(Channel.name.in_(sorted(reader.channels)))
                scopes = set(session.scalars(owned))
        data = self._read_upload(upload, self.settings.max_find_bytes, "FindImage")
        return self._find(data, scopes, limit, with_level=not channel, counted=(reader.user.id, searched))

    def find_as_operator(self, data: bytes, channel: str | None, limit: int = 1) -> dict[str, Any]:
        """The operator's ``imagecloud find``: search one channel or every channel, counting no match."""
        with self.db.session() as session:
            if channel:
                scopes = {self._channel(session, channel).id}
            else:
                scopes = set(session.scalars(select(Channel.id)))
        return self._find(data, scopes, limit, with_level=True, counted=None)

    def _find(
        self,
        data: bytes,
        scopes: set[int],
        limit: int,
        *,
        with_level: bool,
        counted: tuple[int, str] | None,
    ) -> dict[str, Any]:
        """Search ``scopes``; ``counted`` (owner id, channel searched) records the statistics."""
        query = self.recognizer.analyse_query(data)
        body: dict[str, Any] = {}
        if with_level:
            body["level"] = self.recognizer.rate_query(query)
        matches = self.recognizer.search(query, sorted(scopes), limit) if scopes else []
        results = self._resolve_matches(matches, scopes)
        if counted is not None:
            self._count_search(*counted, found=bool(results))
        if results:
            best = results[0]
            if counted is not None:
                self._count_match(best["_channel_id"], best["identifier"])
            body.update({key: value for key, value in best.items() if not key.startswith("_")})
        if limit > 1:
            body["results"] = [
                {key: value for key, value in item.items() if not key.startswith("_")} for item in results
            ]
        return body

    def _resolve_matches(self, matches: Sequence[Any], scopes: set[int]) -> list[dict[str, Any]]:
        """Turn index hits into response entries, dropping any whose row is gone (removed meanwhile)."""
        if not matches:
            return []
        ids = [match.target_id for match in matches]
        with self.db.session() as session:
            rows = {
                target.id: (target, name)
                for target, name in session.execute(
                    select(Target, Channel.name)
                    .join(Channel, Channel.id == Target.channel_id)
                    .where(Target.id.in_(ids))
                )
            }
        results = []
        for match in matches:
            found = rows.get(match.target_id)
            if found is None or found[0].channel_id not in scopes:
                continue
            target, channel_name = found
            results.append(
                {
                    "identifier": target.identifier,
                    "channel": channel_name,
                    "metadata": target.meta,
                    "score": round(float(match.score), 4),
                    "corners": [[round(float(x), 1), round(float(y), 1)] for x, y in match.corners],
                    "_channel_id": target.channel_id,
                }
            )
        return results

    def _count_match(self, channel_id: int, identifier: str) -> None:
        today = dt.datetime.now(dt.UTC).date()
        values = {"day": today, "channel_id": channel_id, "identifier": identifier, "count": 1}
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        statement = insert(MatchCount).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["day", "channel_id", "identifier"],
            set_={"count": MatchCount.count + 1},
        )
        try:
            with self.db.session() as session:
                session.execute(statement)
        except Exception:
            # The caller still gets the answer; a lost count is logged rather than failing the search.
            log.exception("could not record a match for channel %d", channel_id)

    def _count_search(self, user_id: int, channel: str, *, found: bool) -> None:
        try:
            with self.db.session() as session:
                searches.record(session, dt.datetime.now(dt.UTC).date(), user_id, channel, found=found)
        except Exception:
            # As for matches: the caller still gets the answer.
            log.exception("could not record a search of channel %r", channel)

    # ------------------------------------------------------------------ Statistics

    def statistics(
        self,
        username: str | None,
        secretkey: str | None,
        startdate: str | None,
        enddate: str | None,
        channel: str | None,
        identifier: str | None,
    ) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._authenticate(session, username, secretkey)
            first, last = check.date_range(startdate, enddate, self.settings.max_statistics_days)
            if identifier and not channel:
                raise InvalidParameter("identifier needs channel")
            body: dict[str, Any] = {"username": user.name}
            in_range = MatchCount.day.between(first, last)
            if not channel:
                rows = session.execute(
                    select(MatchCount.day, Channel.name, func.sum(MatchCount.count))
                    .join(Channel, Channel.id == MatchCount.channel_id)
                    .where(Channel.owner_id == user.id, in_range)
                    .group_by(MatchCount.day, Channel.name)
                    .order_by(MatchCount.day, self._bytewise(Channel.name))
                )
                body["records"] = [
                    {"date": day.strftime("%Y%m%d"), "channel": name, "count": int(count)}
                    for day, name, count in rows
                    if count
                ]
                body["searches"] = searches.per_day(session, user.id, first, last, None, self._bytewise)
                return body
            owned = self._owned_channel(session, user, channel)
            body["channel"] = owned.name
            query = select(MatchCount.day, MatchCount.identifier, MatchCount.count).where(
                MatchCount.channel_id == owned.id, in_range
            )
            if identifier:
                ident = check.identifier(identifier)
                self._target(session, owned, ident)
                query = query.where(MatchCount.identifier == ident)
            else:
                body["searches"] = searches.per_day(session, user.id, first, last, owned.name, self._bytewise)
            rows = session.execute(query.order_by(MatchCount.day, self._bytewise(MatchCount.identifier)))
            body["records"] = [
                {"date": day.strftime("%Y%m%d"), "identifier": ident, "count": count}
                for day, ident, count in rows
                if count
            ]
            return body

    # ------------------------------------------------------------------ channel endpoints (extension)

    def api_create_channel(
        self, username: str | None, secretkey: str | None, channel: str | None
    ) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._authenticate(session, username, secretkey)
            name = check.new_channel_name(channel)
            info = self._insert_channel(session, user, name, None)
        return {"channel": info.name, "quota": info.quota}

    def api_delete_channel(
        self, username: str | None, secretkey: str | None, channel: str | None
    ) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._authenticate(session, username, secretkey)
            owned = self._owned_channel(session, user, check.channel_name(channel))
        self._delete_channel(owned)
        return {}

    def api_list_channels(self, username: str | None, secretkey: str | None) -> dict[str, Any]:
        with self.db.session() as session:
            user = self._authenticate(session, username, secretkey)
        return {
            "channels": [
                {"channel": info.name, "count": info.count, "quota": info.quota}
                for info in self.list_channels(owner=user.name)
            ]
        }

    # ------------------------------------------------------------------ web console (extension)

    def image_detail(
        self, username: str | None, secretkey: str | None, channel: str | None, identifier: str | None
    ) -> dict[str, Any]:
        """A target with its keypoints and the rating self-test per keypoint, for its owner only."""
        with self.db.session() as session:
            owned, target = self._owned_target(session, username, secretkey, channel, identifier)
            blob = session.scalar(select(TargetFeatures.data).where(TargetFeatures.target_id == target.id))
        if blob is None:
            raise TargetNotFound("target was removed")
        try:
            data = self.blobs.get(target.blob_key)
        except FileNotFoundError as exc:
            raise TargetNotFound("target was removed") from exc
        feats, test = self.recognizer.explain_target(data, blob)
        return {
            "identifier": target.identifier,
            "channel": owned.name,
            "metadata": target.meta,
            "level": target.level,
            "matchratio": target.matchratio,
            "width": target.width,
            "height": target.height,
            "imageurl": f"/files/{target.blob_key}",
            "keypoints": [
                [round(float(x), 1), round(float(y), 1), int(c)]
                for (x, y), c in zip(feats.points, test.counts, strict=True)
            ],
            "rating": {
                "keypoints": len(feats),
                "views": test.views,
                "refound_per_view": test.per_view,
                "mean_refound": round(sum(test.per_view) / max(1, test.views), 1),
                "bands": [
                    {"level": level, "min_matchratio": ratio, "min_keypoints": rich}
                    for level, ratio, rich in LEVEL_BANDS
                ],
                "min_keypoints": MIN_KEYPOINTS,
                "min_refound": MIN_REFOUND,
                "min_matchratio": MIN_MATCHRATIO,
            },
        }
