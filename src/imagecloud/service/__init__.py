"""Use cases and rules, independent of HTTP."""

from __future__ import annotations

from imagecloud.config import Settings
from imagecloud.service.recognizer import Recognition, Recognizer
from imagecloud.service.service import ChannelInfo, Service, Upload
from imagecloud.storage import BlobStore, Database, LocalBlobStore
from imagecloud.storage.thumbnails import ThumbnailStore


def open_blob_store(settings: Settings) -> BlobStore:
    """The local folder (embedded default), or the S3-compatible bucket of ``settings.blobs``."""
    if not settings.blobs:
        return LocalBlobStore(settings.resolved_blob_dir)
    from imagecloud.storage.s3blobs import BucketAddress, S3BlobStore, s3_client

    client = s3_client(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        # Every thread that may read or write originals at once: file reads, image work, the rest.
        connections=settings.file_workers + settings.vision_workers + 16,
    )
    return S3BlobStore(client, BucketAddress.parse(settings.blobs))


def build_service(settings: Settings) -> Service:
    """The configured database and blob store (SQLite file and local folder by default), and the index in
    this process or in shards on a Ray cluster."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Service(
        settings=settings,
        db=Database(settings.resolved_database_url),
        blobs=open_blob_store(settings),
        recognizer=open_recognition(settings),
        previews=ThumbnailStore(settings.data_dir / "thumbnails"),
    )


def open_recognition(settings: Settings) -> Recognition:
    """The in-process index (embedded default), or the index shards of ``settings.cluster``."""
    if not settings.cluster:
        return Recognizer(settings.recognizer_settings(), index_dir=settings.data_dir / "index")
    problem = settings.cluster_problem()
    if problem is not None:
        raise ValueError(problem)
    from imagecloud.cluster.recognizer import ClusterRecognizer, ClusterSettings

    cluster = ClusterSettings(
        address=settings.cluster,
        shards=settings.shards,
        namespace=settings.cluster_namespace,
        timeout=settings.shard_timeout,
        reconcile_seconds=settings.shard_reconcile_seconds,
    )
    return ClusterRecognizer(settings.recognizer_settings(), cluster, settings.resolved_database_url)


__all__ = ["ChannelInfo", "Service", "Upload", "build_service", "open_blob_store", "open_recognition"]
