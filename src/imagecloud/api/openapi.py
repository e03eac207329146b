"""OpenAPI description of the form endpoints, for people (the ``/docs`` page) and client generators.

FastAPI cannot see the fields of handlers that read the form themselves (they take only the request),
so each operation is described here, from the contract (docs/API.md): a name (``operationId``), what it
does, one request schema and one response schema with descriptions and examples, extension fields
included. Tools such as schemathesis generate meaningful requests from /openapi.json and check every
answer against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from imagecloud.errors import ALL_ERRORS

# ---------------------------------------------------------------------------------------------- fields


def _text(description: str, example: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, "examples": [example], **extra}


_USERNAME = _text("The owner's user name.", "alice")
_SECRETKEY = _text(
    "The owner's secret key. FindImage and GetImage also take one of the owner's app keys here "
    "(search only; see CreateAppKey).",
    "Rs5sh-2jjbQNqstpDAIq0115b46YYThUG7pGmWAq3yM",
)
_CHANNEL = _text(
    "A channel name (one namespace for the whole server).", "posters", pattern="^[A-Za-z0-9@_.-]{1,64}$"
)
_IDENTIFIER = _text(
    "A target's identifier, unique in its channel, case-sensitive.",
    "poster.001",
    pattern="^[A-Za-z0-9@_.]{3,50}$",
)
_METADATA = _text(
    "A JSON document (at most 64 KiB by default), stored and returned verbatim as sent.",
    '{"title": "Spring show"}',
    maxLength=65536,
)
_DATE = _text(
    "yyyy, yyyyMM or yyyyMMdd (UTC). A short start is the first day of that year or month, "
    "a short end the last.",
    "202612",
    pattern="^[0-9]{4}([0-9]{2}([0-9]{2})?)?$",
)
_FILE = {
    "type": "string",
    "format": "binary",
    "description": "A JPEG or PNG file (recognised by its content, not its name or declared type).",
}
_CREDENTIALS = {"username": _USERNAME, "secretkey": _SECRETKEY}


def _int_text(description: str, example: str) -> dict[str, Any]:
    return _text(description, example, pattern="^[0-9]+$")


# ---------------------------------------------------------------------------------------------- answers

_LEVEL = {
    "type": "integer",
    "minimum": 1,
    "maximum": 5,
    "description": "How easily the image will be recognised, 5 = best: levels 5, 4, 3, 2, 1 re-find at least "
    "64, 32, 16, 8, 4 features per simulated phone photo (16 is what a match needs).",
}
_MATCHRATIO = {
    "type": "number",
    "minimum": 0,
    "maximum": 1,
    "description": "Share of the target's features re-found in simulated camera views (extension).",
}
_SCORE = {"type": "number", "minimum": 0, "maximum": 1, "description": "Match confidence, 0..1 (extension)."}
_NULLABLE_METADATA = {"type": ["string", "null"], "description": "The metadata as stored, or null."}
_CORNERS = {
    "type": "array",
    "description": "The target's four corners in the photo's pixels, clockwise from its top-left "
    "(extension).",
    "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
}
_MATCH_FIELDS: dict[str, Any] = {
    "identifier": {"type": "string"},
    "channel": {"type": "string"},
    "metadata": _NULLABLE_METADATA,
    "score": _SCORE,
    "corners": _CORNERS,
}
_MATCH = {"type": "object", "required": ["identifier"], "properties": _MATCH_FIELDS}
_COMMON = {
    "returncode": {
        "type": "integer",
        "enum": [0, *sorted(e.returncode for e in ALL_ERRORS)],
        "description": "0 on success, else a result code (docs/API.md §3). Branch on this, never on "
        "HTTP status.",
    },
    "message": {
        "type": "string",
        "minLength": 1,
        "description": "The code's message; for 20002, 20005 and 20006 followed by ': ' and the "
        "reason (extension).",
    },
}


@dataclass(frozen=True)
class Operation:
    summary: str
    description: str
    fields: dict[str, Any]
    required: list[str]
    multipart_only: bool
    answer: dict[str, Any] = field(default_factory=dict)  # success fields besides returncode and message
    example: dict[str, Any] = field(default_factory=dict)
    tag: str = "vendor"


ENDPOINTS: dict[str, Operation] = {
    "/AddImage": Operation(
        "Enrol a target image",
        "Stores the image in the channel under the identifier and rates it. Atomic: on a non-zero code "
        "nothing is stored; after 0 the target is findable at once. Multipart only.",
        {
            **_CREDENTIALS,
            "channel": _CHANNEL,
            "identifier": _IDENTIFIER,
            "metadata": _METADATA,
            "image": _FILE,
        },
        ["username", "secretkey", "channel", "identifier", "image"],
        True,
        {
            "level": _LEVEL,
            "matchratio": _MATCHRATIO,
            "identifier": {"type": "string"},
            "similar": {
                "type": "array",
                "description": "Existing targets of the channel the new image matches, best first; [] when "
                "none (extension), also several that fit the same place: a photo of what they share finds "
                "none of them in FindImage.",
                "items": {
                    "type": "object",
                    "required": ["identifier", "score"],
                    "properties": {"identifier": {"type": "string"}, "score": _SCORE},
                },
            },
        },
        {"level": 4, "matchratio": 0.049, "identifier": "poster.001", "similar": []},
    ),
    "/FindImage": Operation(
        "Find the target a photo shows",
        "Searches the channel, or without channel every channel the key may search, and answers the best "
        "target in the photo, or no identifier when it shows none. Multipart only.",
        {
            **_CREDENTIALS,
            "channel": _CHANNEL,
            "maxresults": _int_text("1-10 (extension): with more than 1 the answer also lists results.", "1"),
            "image": _FILE,
        },
        ["username", "secretkey", "image"],
        True,
        {
            **_MATCH_FIELDS,
            "level": {**_LEVEL, "description": "Without channel: the photo's own level (a quality check)."},
            "results": {"type": "array", "items": _MATCH, "description": "With maxresults > 1 (extension)."},
        },
        {
            "identifier": "poster.001",
            "channel": "posters",
            "metadata": '{"title": "Spring show"}',
            "score": 0.97,
            "corners": [[412.0, 118.5], [903.2, 140.1], [880.4, 770.0], [398.9, 741.3]],
        },
    ),
    "/RemoveImage": Operation(
        "Remove a target",
        "After 0 the target is never matched again and its file is gone.",
        {**_CREDENTIALS, "channel": _CHANNEL, "identifier": _IDENTIFIER},
        ["username", "secretkey", "channel", "identifier"],
        False,
    ),
    "/GetImages": Operation(
        "List a channel's targets",
        "Ordered by identifier (byte order), starting at position.",
        {
            **_CREDENTIALS,
            "channel": _CHANNEL,
            "position": _int_text("0-based start index, default 0.", "0"),
            "count": _int_text("Page size, default 100, at most 1000 (extension).", "100"),
        },
        ["username", "secretkey", "channel"],
        False,
        {
            "totalcount": {"type": "integer", "minimum": 0},
            "images": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["identifier"],
                    "properties": {
                        "identifier": {"type": "string"},
                        "metadata": _NULLABLE_METADATA,
                        "matchratio": _MATCHRATIO,
                        "level": _LEVEL,
                        "imageurl": {"type": "string"},
                    },
                },
            },
        },
        {
            "totalcount": 1,
            "images": [{"identifier": "poster.001", "metadata": None, "matchratio": 0.049, "level": 4}],
        },
    ),
    "/GetImage": Operation(
        "Read one target",
        "Credentials are optional (an app that knows only the channel may fetch a target); given, they must "
        "be right and own the channel. imageurl returns the original file.",
        {**_CREDENTIALS, "channel": _CHANNEL, "identifier": _IDENTIFIER},
        ["channel", "identifier"],
        False,
        {
            "identifier": {"type": "string"},
            "channel": {"type": "string"},
            "metadata": _NULLABLE_METADATA,
            "level": _LEVEL,
            "matchratio": _MATCHRATIO,
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "imageurl": {"type": "string", "description": "Path of the original upload on this server."},
        },
        {
            "identifier": "poster.001",
            "channel": "posters",
            "metadata": None,
            "level": 4,
            "matchratio": 0.049,
            "width": 480,
            "height": 640,
            "imageurl": "/files/3f2a9c…",
        },
    ),
    "/Statistics": Operation(
        "Matches and searches per day",
        "Records per (date, channel) or, with channel, per (date, identifier); without identifier also the "
        "searches made (extension). Dates are UTC; the range is at most the server's max_statistics_days.",
        {
            **_CREDENTIALS,
            "startdate": _DATE,
            "enddate": {**_DATE, "examples": ["20261231"]},
            "channel": _CHANNEL,
            "identifier": {**_IDENTIFIER, "description": "One target's records; needs channel."},
        },
        ["username", "secretkey", "startdate", "enddate"],
        False,
        {
            "username": {"type": "string"},
            "channel": {"type": "string"},
            "records": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["date", "count"],
                    "properties": {
                        "date": {"type": "string"},
                        "channel": {"type": "string"},
                        "identifier": {"type": "string"},
                        "count": {"type": "integer"},
                    },
                },
            },
            "searches": {
                "type": "array",
                "description": 'FindImage calls answered 0 per day and channel searched ("" = all channels), '
                "and how many found nothing (extension).",
                "items": {
                    "type": "object",
                    "required": ["date", "channel", "count", "nomatch"],
                    "properties": {
                        "date": {"type": "string"},
                        "channel": {"type": "string"},
                        "count": {"type": "integer"},
                        "nomatch": {"type": "integer"},
                    },
                },
            },
        },
        {
            "username": "alice",
            "records": [{"date": "20261205", "channel": "posters", "count": 12}],
            "searches": [{"date": "20261205", "channel": "posters", "count": 15, "nomatch": 3}],
        },
    ),
    "/UpdateImage": Operation(
        "Replace a target's metadata and/or image",
        "Atomic; the identifier stays findable throughout (extension).",
        {
            **_CREDENTIALS,
            "channel": _CHANNEL,
            "identifier": _IDENTIFIER,
            "metadata": _METADATA,
            "image": _FILE,
        },
        ["username", "secretkey", "channel", "identifier"],
        False,
        {"level": _LEVEL, "matchratio": _MATCHRATIO, "identifier": {"type": "string"}},
        {"level": 4, "matchratio": 0.049, "identifier": "poster.001"},
        "extension",
    ),
    "/CreateChannel": Operation(
        "Create a channel",
        "Owned by the caller; names are global (extension).",
        {**_CREDENTIALS, "channel": _CHANNEL},
        ["username", "secretkey", "channel"],
        False,
        {"channel": {"type": "string"}, "quota": {"type": "integer"}},
        {"channel": "posters", "quota": 1000000},
        "extension",
    ),
    "/DeleteChannel": Operation(
        "Delete a channel",
        "With all its targets, files and statistics (extension).",
        {**_CREDENTIALS, "channel": _CHANNEL},
        ["username", "secretkey", "channel"],
        False,
        tag="extension",
    ),
    "/ListChannels": Operation(
        "List the caller's channels",
        "With target count and quota (extension).",
        dict(_CREDENTIALS),
        ["username", "secretkey"],
        False,
        {
            "channels": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "channel": {"type": "string"},
                        "count": {"type": "integer"},
                        "quota": {"type": "integer"},
                    },
                },
            }
        },
        {"channels": [{"channel": "posters", "count": 1, "quota": 1000000}]},
        "extension",
    ),
    "/CreateAppKey": Operation(
        "Create an app key",
        "A search-only key (FindImage, GetImage) for an app or web page, shown once. Owner's secret key only "
        "(extension).",
        {
            **_CREDENTIALS,
            "name": _text(
                "A name for the key, unique for the owner.", "webar", pattern="^[A-Za-z0-9@_.-]{1,64}$"
            ),
            "channels": _text("Comma-separated channels it may search; empty = every channel.", "posters"),
        },
        ["username", "secretkey", "name"],
        False,
        {
            "name": {"type": "string"},
            "appkey": {"type": "string", "description": "The key, shown only here."},
        },
        {"name": "webar", "appkey": "app_nCOxNPJDmgXlI5eYbHLjE9TqS-tur_Bk443vKqrqKEU"},
        "extension",
    ),
    "/ListAppKeys": Operation(
        "List app keys",
        "Names, channels ([] = all) and creation times, never the keys. Owner's secret key only (extension).",
        dict(_CREDENTIALS),
        ["username", "secretkey"],
        False,
        {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "channels", "created"],
                    "properties": {
                        "name": {"type": "string"},
                        "channels": {"type": "array", "items": {"type": "string"}},
                        "created": {"type": "string", "description": "UTC, ISO 8601."},
                    },
                },
            }
        },
        {"keys": [{"name": "webar", "channels": ["posters"], "created": "2026-12-05T08:40:12Z"}]},
        "extension",
    ),
    "/RevokeAppKey": Operation(
        "Revoke an app key",
        "It stops working at once; other keys are untouched. Unknown name: 20002 (extension).",
        {**_CREDENTIALS, "name": _text("The key's name.", "webar", pattern="^[A-Za-z0-9@_.-]{1,64}$")},
        ["username", "secretkey", "name"],
        False,
        tag="extension",
    ),
}


def _request_body(name: str, op: Operation) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}Request"}
    content: dict[str, Any] = {"multipart/form-data": {"schema": ref}}
    if not op.multipart_only:
        text_fields = {key: value for key, value in op.fields.items() if value is not _FILE}
        text_required = [key for key in op.required if key in text_fields]
        text_schema = {"type": "object", "properties": text_fields, "required": text_required}
        content["application/x-www-form-urlencoded"] = {"schema": text_schema}
    return {"required": True, "content": content}


def _schemas(name: str, op: Operation) -> dict[str, Any]:
    return {
        f"{name}Request": {
            "type": "object",
            "description": f"Form fields of {name}.",
            "properties": op.fields,
            "required": op.required,
        },
        f"{name}Response": {
            "type": "object",
            "description": f"The answer of {name}: the fields besides returncode and message come with "
            "returncode 0.",
            "required": ["returncode", "message"],
            "properties": {**_COMMON, **op.answer},
            "examples": [{"returncode": 0, "message": "success", **op.example}],
        },
    }


def describe_form_endpoints(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe each form endpoint's fields and its JSON answer."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for path, op in ENDPOINTS.items():
            operation = document.get("paths", {}).get(path, {}).get("post")
            if operation is None:
                continue
            name = path.strip("/")
            schemas.update(_schemas(name, op))
            operation.update(
                {
                    "operationId": name,
                    "summary": op.summary,
                    "description": op.description,
                    "tags": [op.tag],
                    "requestBody": _request_body(name, op),
                    "responses": {
                        "200": {
                            "description": "Always HTTP 200: the outcome is `returncode` (0 = success).",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": f"#/components/schemas/{name}Response"}
                                }
                            },
                        },
                        "413": {"description": "Request body over the transport cap."},
                        "408": {"description": "Request body not received in time."},
                    },
                }
            )
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
