"""OpenAPI description of the form endpoints.

FastAPI cannot see the fields of handlers that read the form themselves (they take only the request),
so the request bodies and the answer shape are described here, from the contract, and merged into the
generated document. Tools such as schemathesis then generate meaningful requests from /openapi.json.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from imagecloud.errors import ALL_ERRORS

_TEXT = {"type": "string"}
_CHANNEL = {"type": "string", "pattern": "^[A-Za-z0-9@_.-]{1,64}$"}
_IDENTIFIER = {"type": "string", "pattern": "^[A-Za-z0-9@_.]{3,50}$"}
_METADATA = {
    "type": "string",
    "description": "a JSON document, stored and returned verbatim",
    "maxLength": 65536,
}
_INT = {"type": "string", "pattern": "^[0-9]+$"}
_DATE = {"type": "string", "pattern": "^[0-9]{4}([0-9]{2}([0-9]{2})?)?$"}
_FILE = {"type": "string", "format": "binary", "description": "JPEG or PNG (recognised by content)"}
_CREDENTIALS = {"username": _TEXT, "secretkey": _TEXT}

# path -> (fields, required fields, multipart only)
ENDPOINTS: dict[str, tuple[dict[str, Any], list[str], bool]] = {
    "/AddImage": (
        {
            **_CREDENTIALS,
            "channel": _CHANNEL,
            "identifier": _IDENTIFIER,
            "metadata": _METADATA,
            "image": _FILE,
        },
        ["username", "secretkey", "channel", "identifier", "image"],
        True,
    ),
    "/FindImage": (
        {**_CREDENTIALS, "channel": _CHANNEL, "maxresults": _INT, "image": _FILE},
        ["username", "secretkey", "image"],
        True,
    ),
    "/RemoveImage": (
        {**_CREDENTIALS, "channel": _CHANNEL, "identifier": _IDENTIFIER},
        ["username", "secretkey", "channel", "identifier"],
        False,
    ),
    "/GetImages": (
        {**_CREDENTIALS, "channel": _CHANNEL, "position": _INT, "count": _INT},
        ["username", "secretkey", "channel"],
        False,
    ),
    "/GetImage": (
        {**_CREDENTIALS, "channel": _CHANNEL, "identifier": _IDENTIFIER},
        ["channel", "identifier"],
        False,
    ),
    "/Statistics": (
        {
            **_CREDENTIALS,
            "startdate": _DATE,
            "enddate": _DATE,
            "channel": _CHANNEL,
            "identifier": _IDENTIFIER,
        },
        ["username", "secretkey", "startdate", "enddate"],
        False,
    ),
    "/UpdateImage": (
        {
            **_CREDENTIALS,
            "channel": _CHANNEL,
            "identifier": _IDENTIFIER,
            "metadata": _METADATA,
            "image": _FILE,
        },
        ["username", "secretkey", "channel", "identifier"],
        False,
    ),
    "/CreateChannel": ({**_CREDENTIALS, "channel": _CHANNEL}, ["username", "secretkey", "channel"], False),
    "/DeleteChannel": ({**_CREDENTIALS, "channel": _CHANNEL}, ["username", "secretkey", "channel"], False),
    "/ListChannels": (dict(_CREDENTIALS), ["username", "secretkey"], False),
    "/CreateAppKey": (
        {**_CREDENTIALS, "name": _CHANNEL, "channels": _TEXT},
        ["username", "secretkey", "name"],
        False,
    ),
    "/ListAppKeys": (dict(_CREDENTIALS), ["username", "secretkey"], False),
    "/RevokeAppKey": ({**_CREDENTIALS, "name": _CHANNEL}, ["username", "secretkey", "name"], False),
}

_NUMBER_0_1 = {"type": "number", "minimum": 0, "maximum": 1}
_LEVEL = {"type": "integer", "minimum": 1, "maximum": 5}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_CORNERS = {
    "type": "array",
    "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
}

ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["returncode", "message"],
    "properties": {
        "returncode": {"type": "integer", "enum": [0, *sorted(e.returncode for e in ALL_ERRORS)]},
        "message": {"type": "string", "minLength": 1},
        "identifier": _TEXT,
        "channel": _TEXT,
        "metadata": _NULLABLE_TEXT,
        "level": _LEVEL,
        "matchratio": _NUMBER_0_1,
        "score": _NUMBER_0_1,
        "corners": _CORNERS,
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer", "minimum": 1},
        "imageurl": _TEXT,
        "totalcount": {"type": "integer", "minimum": 0},
        "images": {"type": "array", "items": {"type": "object", "required": ["identifier"]}},
        "records": {"type": "array", "items": {"type": "object", "required": ["date", "count"]}},
        "results": {"type": "array", "items": {"type": "object", "required": ["identifier"]}},
    },
}


def _request_body(fields: dict[str, Any], required: list[str], multipart_only: bool) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": required}
    content: dict[str, Any] = {"multipart/form-data": {"schema": schema}}
    if not multipart_only:
        text_fields = {name: value for name, value in fields.items() if value is not _FILE}
        text_required = [name for name in required if name in text_fields]
        text_schema = {"type": "object", "properties": text_fields, "required": text_required}
        content["application/x-www-form-urlencoded"] = {"schema": text_schema}
    return {"required": True, "content": content}


def describe_form_endpoints(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe each form endpoint's fields and its JSON answer."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for path, (fields, required, multipart_only) in ENDPOINTS.items():
            operation = document.get("paths", {}).get(path, {}).get("post")
            if operation is None:
                continue
            operation["requestBody"] = _request_body(fields, required, multipart_only)
            operation["responses"] = {
                "200": {
                    "description": "Always HTTP 200: the outcome is `returncode` (0 = success).",
                    "content": {"application/json": {"schema": ANSWER}},
                },
                "413": {"description": "Request body over the transport cap."},
                "408": {"description": "Request body not received in time."},
            }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
