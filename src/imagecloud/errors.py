"""One exception type per vendor result code.

Anything below the API layer raises these; ``imagecloud.api`` turns them into
``{"returncode": ..., "message": ...}`` in exactly one place.
"""

from __future__ import annotations


class ImageCloudError(Exception):
    """Base class: carries the vendor result code and its fixed message."""

    returncode: int = -1
    message: str = "error"
    # Whether the answer explains itself (contract §2): for these codes the wire message is the code's
    # message, ": ", and ``detail`` (which field and why, which limit). For every other code ``detail`` is
    # for logs only: a 20001 must never tell which of username and key was wrong.
    explained: bool = False

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.message)
        self.detail = detail

    @property
    def wire_message(self) -> str:
        if self.explained and self.detail:
            return f"{self.message}: {self.detail}"
        return self.message


class WrongCredentials(ImageCloudError):
    returncode = 20001
    message = "user secret key not correct"


class InvalidParameter(ImageCloudError):
    returncode = 20002
    message = "parameter missing or invalid"
    explained = True


class ChannelNotFound(ImageCloudError):
    returncode = 20003
    message = "channel not exists"


class NotYourChannel(ImageCloudError):
    returncode = 20004
    message = "not your channel"


class MultipartRequired(ImageCloudError):
    returncode = 20005
    message = "multipart stream request needed"
    explained = True


class FileTooLarge(ImageCloudError):
    returncode = 20006
    message = "file size limit exceeded"
    explained = True


class UnsupportedFormat(ImageCloudError):
    returncode = 20007
    message = "file format not recognized"


class InvalidIdentifier(ImageCloudError):
    returncode = 20010
    message = "image id not valid"


class QuotaExceeded(ImageCloudError):
    returncode = 20012
    message = "too many images"


class FeatureInsufficient(ImageCloudError):
    returncode = 20013
    message = "image feature insufficient"


class TargetNotFound(ImageCloudError):
    returncode = 20014
    message = "image identifier not exists"


class SystemBusy(ImageCloudError):
    returncode = 20015
    message = "system busy"


class IdentifierTaken(ImageCloudError):
    returncode = 20016
    message = "image name taken"


ALL_ERRORS: tuple[type[ImageCloudError], ...] = (
    WrongCredentials,
    InvalidParameter,
    ChannelNotFound,
    NotYourChannel,
    MultipartRequired,
    FileTooLarge,
    UnsupportedFormat,
    InvalidIdentifier,
    QuotaExceeded,
    FeatureInsufficient,
    TargetNotFound,
    SystemBusy,
    IdentifierTaken,
)
