"""templar_jax.storage: object-storage buckets (file, memory, GCS, S3/R2), keys, gather."""

from templar_jax.storage.bucket import Bucket, BucketConfig
from templar_jax.storage.credentials import (
    BucketAccess,
    CommitmentError,
    decode_commitment,
    encode_commitment,
    file_commitment,
    gcs_commitment,
    r2_commitment,
)
from templar_jax.storage.errors import BadBucketUrl, ObjectNotFound, ObjectTooLarge, StorageError, StorageTimeout
from templar_jax.storage.gather import GatherStatus, PeerOutcome, PeerSource, agather, gather
from templar_jax.storage.metadata import ObjectInfo
from templar_jax.storage.s3_credentials import S3Credentials
from templar_jax.storage.timing import TimeStatus, UploadWindow, check_upload_time

__all__ = [
    "BadBucketUrl", "Bucket", "BucketAccess", "BucketConfig", "CommitmentError", "GatherStatus", "ObjectInfo",
    "ObjectNotFound", "ObjectTooLarge", "PeerOutcome", "PeerSource", "S3Credentials", "StorageError",
    "StorageTimeout", "TimeStatus", "UploadWindow", "agather", "check_upload_time", "decode_commitment",
    "encode_commitment", "file_commitment", "gather", "gcs_commitment", "r2_commitment",
]
