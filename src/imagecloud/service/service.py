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

from sqlalchemy.orm import Session

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
from imagecloud.service.recognizer import Recognition, TargetAnalysis
from imagecloud.service.sweep import collect_orphans
from imagecloud.storage import (
    BlobStore,
    Channel,
    Database,
    Target,
    User,
    channels,
    searches,
    targets,
    users,
)
from imagecloud.storage import matches as match_counts
from imagecloud.storage.blobs import BlobStoreUnavailable, new_blob_key
from imagecloud.storage.featurestore import FeatureStore
from imagecloud.storage.lock import DataDirLock
from imagecloud.storage.thumbnails import ThumbnailStore
from imagecloud.vision.rating import FOUND_SHARE, LEVEL_BANDS, MIN_KEYPOINTS, MIN_REFOUND
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
        recognizer: Recognition,
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

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Migrate, drop blobs no row points to (left by a crash mid-add), load the search index."""
        self.db.migrate()
        # Every unreferenced file is garbage only where no other process adds files: inside the data
        # directory this process holds (a blob folder elsewhere may be shared by several servers).
        exclusive = self.data_lock is not None and self.data_lock.covers(self.settings.resolved_blob_dir)
        collect_orphans(self.db, self.blobs, self.previews, exclusive=exclusive)
        self.recognizer.start(FeatureStore(self.db))
        self.ready = True
        log.info(
            "ready: %d targets indexed, %d of them from the saved index",
            len(self.recognizer),
            self.recognizer.restored,
        )

    def stop(self) -> None:
        """Orderly shutdown: save the word index so the next start reads it instead of rebuilding it."""
        if self.ready:  # a start still loading has nothing complete to save
            self.recognizer.stop()

    def dependencies(self) -> dict[str, dict[str, Any]]:
        """What the service needs besides its own process, each with whether it answers now (``/readyz``)."""
        return {
            "database": {"backend": self.db.dialect, "ok": self.db.ping()},
            "blobs": {"backend": self.blobs.backend, "ok": self.blobs.reachable()},
            **self.recognizer.dependencies(),
        }

    def _channel_lock(self, channel_id: int) -> threading.Lock:
        # Serialises writes inside one channel so identifier/quota checks and the insert act as one step.
        with self._locks_guard:
            return self._channel_locks.setdefault(channel_id, threading.Lock())

    # ------------------------------------------------------------------ operator actions (CLI)

    def create_user(self, name: str) -> str:
        check.user_name(name)
        key = new_secret_key()
        with self.db.session() as session:
            if users.exists(session, name):
                raise InvalidParameter(f"user {name!r} exists")
            users.insert(session, name, hash_key(key))
        return key

    def rotate_key(self, name: str) -> str:
        key = new_secret_key()
        with self.db.session() as session:
            if not users.set_key_hash(session, name, hash_key(key)):
                raise InvalidParameter(f"no user {name!r}")
        return key

    def user_exists(self, name: str) -> bool:
        with self.db.session() as session:
            return users.exists(session, name)

    def create_channel(self, name: str, owner: str, quota: int | None = None) -> ChannelInfo:
        check.new_channel_name(name)
        with self.db.session() as session:
            user = users.by_name(session, owner)
            if user is None:
                raise InvalidParameter(f"no user {owner!r}")
            return self._insert_channel(session, user, name, quota)

    def _insert_channel(self, session: Session, user: User, name: str, quota: int | None) -> ChannelInfo:
        existing = channels.by_name(session, name)
        if existing is not None:
            if existing.owner_id != user.id:
                raise NotYourChannel(f"channel {name!r} belongs to another user")
            raise InvalidParameter(f"channel {name!r} exists")
        if quota is not None and quota < 0:
            raise InvalidParameter("quota must be non-negative")
        channel = channels.insert(session, name, user.id, self._quota(quota))
        return ChannelInfo(name=name, owner=user.name, quota=channel.quota, count=0)

    def _quota(self, quota: int | None) -> int:
        return self.settings.default_channel_quota if quota is None else quota

    def set_quota(self, name: str, quota: int) -> None:
        if quota < 0:
            raise InvalidParameter("quota must be non-negative")
        with self.db.session() as session:
            if not channels.set_quota(session, name, quota):
                raise ChannelNotFound(f"no channel {name!r}")

    def delete_channel(self, name: str) -> None:
        with self.db.session() as session:
            channel = self._channel(session, name)
        self._delete_channel(channel)

    def _delete_channel(self, channel: Channel) -> None:
        with self._channel_lock(channel.id):
            self.recognizer.drop_scope(channel.id)
            with self.db.session() as session:
                keys = targets.blob_keys(session, channel.id)
                channels.delete_by_id(session, channel.id)
                searches.forget_channel(session, channel.owner_id, channel.name)
            for key in keys:
                self._delete_files(key)

    def list_channels(self, owner: str | None = None) -> list[ChannelInfo]:
        with self.db.session() as session:
            return [
                ChannelInfo(name=name, owner=user, quota=quota, count=count)
                for name, user, quota, count in channels.listing(session, owner)
            ]

    # ------------------------------------------------------------------ shared rules

    def _authenticate(self, session: Session, username: str | None, secretkey: str | None) -> User:
        if not username or not secretkey:
            raise WrongCredentials("missing username or secretkey")
        user = users.by_name(session, username)
        if not key_matches(secretkey, user.key_hash if user is not None else None) or user is None:
            raise WrongCredentials("unknown user or wrong key")
        self.rate_limiter.acquire(user.name)
        return user

    def _channel(self, session: Session, name: str) -> Channel:
        channel = channels.by_name(session, name)
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
        target = targets.by_identifier(session, channel.id, identifier)
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
            names = targets.identifiers_by_id(session, channel_id, [m.target_id for m in matches])
        return [
            {"identifier": names[m.target_id], "score": round(float(m.score), 4)}
            for m in sorted(matches, key=lambda m: -m.score)
            if m.target_id in names
        ]

    def _check_insertable(self, session: Session, channel: Channel, identifier: str) -> None:
        if targets.identifier_taken(session, channel.id, identifier):
            raise IdentifierTaken(f"identifier {identifier!r} exists")
        self._check_room(session, channel)

    def _check_room(self, session: Session, channel: Channel) -> None:
        """20003 if ``channel`` was deleted, 20012 if it holds its quota."""
        row = channels.room(session, channel.id)
        if row is None:
            raise ChannelNotFound("channel was deleted")
        count, quota = row
        if count >= quota:
            raise QuotaExceeded(f"channel {channel.name!r} holds {count} of {quota} targets")

    def _take_slot(self, session: Session, channel: Channel) -> None:
        """Count one more target in ``channel``, in the transaction that inserts it (exact with several
        processes adding to one channel: see :func:`imagecloud.storage.channels.take_slot`)."""
        if not channels.take_slot(session, channel.id):
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
                    elif not targets.delete_by_id(session, replaces.id):
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
                    try:
                        target_id = targets.insert(session, target, analysis.features_blob)
                    except targets.Duplicate as error:
                        raise IdentifierTaken(str(error)) from error
                    self.recognizer.add(channel.id, target_id, analysis.features_blob)
                    indexed = target_id
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
            present = targets.identifiers_of(session, found.id)
        return found, present

    def channel_features(self, channel_id: int) -> Iterator[tuple[int, str, bytes]]:
        """(target id, identifier, features) of every target of a channel, for the import's look-alikes."""
        with self.db.session() as session:
            yield from targets.channel_features(session, channel_id)

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
                if not targets.set_meta(session, old.id, meta):
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
                    if not targets.delete_by_id(session, target.id):
                        raise TargetNotFound("target was removed concurrently")
                    channels.release_slot(session, owned.id)
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
            data = targets.features(session, target_id)
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
            total = targets.count_prefixed(session, owned.id, wanted) if wanted else owned.target_count
            rows = targets.page(session, owned.id, wanted, start, size)
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
                scopes = channels.ids_of_owner(session, reader.user.id, reader.channels)
        data = self._read_upload(upload, self.settings.max_find_bytes, "FindImage")
        return self._find(data, scopes, limit, with_level=not channel, counted=(reader.user.id, searched))

    def find_as_operator(self, data: bytes, channel: str | None, limit: int = 1) -> dict[str, Any]:
        """The operator's ``imagecloud find``: search one channel or every channel, counting no match."""
        with self.db.session() as session:
            scopes = {self._channel(session, channel).id} if channel else channels.all_ids(session)
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
            rows = targets.with_channel_names(session, ids)
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
        try:
            with self.db.session() as session:
                match_counts.record(session, dt.datetime.now(dt.UTC).date(), channel_id, identifier)
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
            if not channel:
                body["records"] = [
                    {"date": day.strftime("%Y%m%d"), "channel": name, "count": count}
                    for day, name, count in match_counts.per_channel(session, user.id, first, last)
                ]
                body["searches"] = searches.per_day(session, user.id, first, last, None)
                return body
            owned = self._owned_channel(session, user, channel)
            body["channel"] = owned.name
            ident: str | None = None
            if identifier:
                ident = check.identifier(identifier)
                self._target(session, owned, ident)
            else:
                body["searches"] = searches.per_day(session, user.id, first, last, owned.name)
            body["records"] = [
                {"date": day.strftime("%Y%m%d"), "identifier": name, "count": count}
                for day, name, count in match_counts.per_identifier(session, owned.id, first, last, ident)
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
            blob = targets.features(session, target.id)
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
                    {"level": level, "min_refound": minimum, "found_share": FOUND_SHARE.get(level)}
                    for level, minimum in LEVEL_BANDS
                ],
                "min_keypoints": MIN_KEYPOINTS,
                "min_refound": MIN_REFOUND,
            },
        }
