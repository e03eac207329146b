"""Property tests: whatever a caller puts in any field of any endpoint, the answer is a contract answer
(HTTP 200, JSON, a documented result code), and no field value is ever executed as SQL or reaches
another tenant's data."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import imagegen
from tests.api.helpers import add_ok, stored_identifiers
from tests.server import Account, ServerProcess

CODES = {0, 20001, 20002, 20003, 20004, 20005, 20006, 20007, 20010, 20012, 20013, 20014, 20015, 20016}

FIELDS: dict[str, list[str]] = {
    "AddImage": ["username", "secretkey", "channel", "identifier", "metadata"],
    "RemoveImage": ["username", "secretkey", "channel", "identifier"],
    "GetImages": ["username", "secretkey", "channel", "position", "count"],
    "GetImage": ["username", "secretkey", "channel", "identifier"],
    "Statistics": ["username", "secretkey", "startdate", "enddate", "channel", "identifier"],
    "FindImage": ["username", "secretkey", "channel", "maxresults"],
    "UpdateImage": ["username", "secretkey", "channel", "identifier", "metadata"],
    "CreateChannel": ["username", "secretkey", "channel"],
    "DeleteChannel": ["username", "secretkey", "channel"],
    "ListChannels": ["username", "secretkey"],
}
FILE_ENDPOINTS = {"AddImage", "FindImage", "UpdateImage"}

HOSTILE = [
    "' OR '1'='1",
    "x'); DROP TABLE targets; --",
    '"; DELETE FROM users; --',
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "%00",
    "\u0000",
    "-1",
    "99999999999999999999999999",
    "1e309",
    "NaN",
    "20240230",
    "{}",
    '{"a":' * 50,
    "\ud800",
    "\uff21\uff22\uff23",
    " " * 3,
]

# The caller's own valid values are mixed in so checks past the credentials are reached too.
SLOT = st.sampled_from(["own", "hostile", "text", "absent"])
TEXT = st.text(max_size=80) | st.sampled_from(HOSTILE)


def _value(kind: str, own: str, text: str) -> str | None:
    return {"own": own, "hostile": text, "text": text, "absent": None}[kind]


def _encode(value: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8 by a real client either; they travel as replacement text.
    return value.encode("utf-8", "replace").decode("utf-8")


@pytest.fixture(scope="module")
def tenants(server: ServerProcess) -> tuple[Account, Account, list[str]]:
    """A fuzzing account, and a bystander whose targets must come through untouched."""
    fuzzer = server.new_account("fuzzer")
    bystander = server.new_account("bystander")
    target = imagegen.encode(imagegen.poster(71))
    add_ok(server, fuzzer, "own.target", target)
    add_ok(server, bystander, "kept.one", target)
    return fuzzer, bystander, stored_identifiers(server, bystander.channel)


@pytest.fixture(scope="module")
def small_jpeg() -> bytes:
    return imagegen.encode(imagegen.poster(72, 160, 200))


@pytest.mark.parametrize("endpoint", sorted(FIELDS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_field_values_get_a_contract_answer(
    server: ServerProcess,
    tenants: tuple[Account, Account, list[str]],
    small_jpeg: bytes,
    endpoint: str,
    data: Any,
) -> None:
    fuzzer, bystander, kept = tenants
    own = {"username": fuzzer.username, "secretkey": fuzzer.secretkey, "channel": fuzzer.channel}
    own |= {"identifier": "own.target", "startdate": "2024", "enddate": "2030", "metadata": "{}"}
    form: dict[str, str] = {}
    for name in FIELDS[endpoint]:
        value = _value(data.draw(SLOT, label=name), own.get(name, ""), data.draw(TEXT, label=f"{name} text"))
        if value is not None:
            form[name] = _encode(value)
    files = None
    if endpoint in FILE_ENDPOINTS:
        content = data.draw(st.sampled_from([small_jpeg, b"", b"\xff\xd8\xff"]) | st.binary(max_size=256))
        files = {"image": ("../x.jpg", content, "image/jpeg")}
    multipart = endpoint in FILE_ENDPOINTS or data.draw(st.booleans(), label="multipart")
    if multipart and files is None:
        # httpx sends multipart only with a file part; an unrelated one is ignored by the server.
        files = {"unrelated": ("a.txt", b"x", "text/plain")}
    # Never delete the channels the other checks rely on; every other write is fair game.
    if endpoint == "DeleteChannel" and form.get("secretkey") == fuzzer.secretkey:
        form["channel"] = "no-such-channel-here"
    response = httpx.post(f"{server.url}/{endpoint}", data=form, files=files, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert body["returncode"] in CODES, body
    assert isinstance(body["message"], str) and body["message"]
    assert stored_identifiers(server, bystander.channel) == kept
