"""One test per security rule: hashed keys compared in constant time, derived blob names, text that is
never executed, and what GetImage shows without credentials. (Per-user rate limits: test_limits.py;
the console's escaping: tests/browser; tenant isolation per endpoint: tests/api/test_isolation.py.)"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import re
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import select

from imagecloud.service import auth
from imagecloud.storage import User
from tests.api.helpers import add_ok, jpeg
from tests.server import Account, ServerProcess

_names = itertools.count()


def fresh(server: ServerProcess) -> Account:
    return server.new_account(f"sec{os.getpid()}x{next(_names)}")


class TestSecretKeys:
    def test_stored_as_sha256_only(self, server: ServerProcess):
        account = fresh(server)
        with server.operator.db.session() as session:
            stored = session.scalar(select(User.key_hash).where(User.name == account.username))
        assert stored == hashlib.sha256(account.secretkey.encode()).hexdigest()
        assert account.secretkey not in stored

    @pytest.mark.parametrize(
        "stored", [None, auth.hash_key("the real key")], ids=["unknown user", "wrong key"]
    )
    def test_compared_in_constant_time(self, monkeypatch: pytest.MonkeyPatch, stored: str | None):
        """Every check, including an unknown user's, goes through hmac.compare_digest over equal-length
        digests, so the time taken tells nothing about how much of a key was right."""
        calls: list[tuple[str, str]] = []
        real = hmac.compare_digest

        def recording(a: str, b: str) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", recording)
        assert not auth.key_matches("a guess", stored)
        assert len(calls) == 1
        assert len(calls[0][0]) == len(calls[0][1]) == 64
        assert auth.key_matches("the real key", auth.hash_key("the real key"))


class TestDerivedFileNames:
    HOSTILE_NAMES: ClassVar[list[str]] = [
        "../../../../tmp/owned.jpg",
        "/etc/passwd",
        "..\\..\\x.jpg",
        "a\x00b.jpg",
    ]

    @pytest.mark.parametrize("filename", HOSTILE_NAMES)
    def test_no_caller_text_reaches_a_path(self, server: ServerProcess, target_jpeg: bytes, filename: str):
        account = fresh(server)
        outside = set(server.data_dir.parent.rglob("*"))
        server.call(
            "AddImage",
            account.auth(identifier="..x..", metadata='"../../etc"'),
            files={"image": (filename, target_jpeg, "image/jpeg")},
        )
        body = server.call("GetImage", {"channel": account.channel, "identifier": "..x.."})
        assert body["returncode"] == 0, body
        assert re.fullmatch(r"/files/[0-9a-f]{32}", body["imageurl"])
        blobs = server.data_dir / "blobs"
        for path in blobs.rglob("*"):
            relative = path.relative_to(blobs).as_posix()
            assert re.fullmatch(r"[0-9a-f]{2}(/[0-9a-f]{32})?", relative), relative
        created = set(server.data_dir.parent.rglob("*")) - outside
        assert all(server.data_dir in p.parents for p in created), created
        assert not Path("/tmp/owned.jpg").exists()


class TestTextIsData:
    PAYLOADS: ClassVar[list[str]] = [
        "\"'); DROP TABLE targets; --",
        "<script>alert(document.cookie)</script>",
        "<img src=x onerror=alert(1)>&amp;",
        "%s%n{0}${jndi:x}",
    ]

    @pytest.mark.parametrize("payload", PAYLOADS)
    def test_metadata_round_trips_verbatim(self, server: ServerProcess, target_jpeg: bytes, payload: str):
        account = fresh(server)
        metadata = json.dumps({"note": payload})
        add_ok(server, account, "verbatim", target_jpeg, metadata=metadata)
        listed = server.call("GetImages", account.auth())
        assert [image["metadata"] for image in listed["images"]] == [metadata]
        single = server.call("GetImage", {"channel": account.channel, "identifier": "verbatim"})
        assert single["metadata"] == metadata
        # The table the payload names is still there and still serves.
        assert server.call("GetImages", account.auth())["totalcount"] == 1

    @pytest.mark.parametrize("payload", ["x' OR '1'='1", 'x" OR "1"="1', "%", "_"])
    def test_names_are_never_patterns_or_sql(self, server: ServerProcess, target_jpeg: bytes, payload: str):
        account = fresh(server)
        add_ok(server, account, "secret1", target_jpeg)
        for endpoint in ("GetImage", "RemoveImage"):
            body = server.call(endpoint, account.auth(identifier=payload))
            assert body["returncode"] == 20010, body
        body = server.call("GetImages", {**account.auth(), "channel": payload})
        assert body["returncode"] in (20002, 20003), body
        assert server.call("GetImages", account.auth())["totalcount"] == 1


class TestAnonymousGetImage:
    CONTRACT: ClassVar[set[str]] = {
        "returncode",
        "message",
        "identifier",
        "channel",
        "metadata",
        "level",
        "matchratio",
        "width",
        "height",
        "imageurl",
    }

    def test_shows_only_the_contract_fields(self, server: ServerProcess, target_jpeg: bytes):
        account = fresh(server)
        add_ok(server, account, "public1", target_jpeg)
        body = server.call("GetImage", {"channel": account.channel, "identifier": "public1"})
        assert set(body) == self.CONTRACT

    def test_cannot_list_or_search(self, server: ServerProcess, target_jpeg: bytes):
        account = fresh(server)
        add_ok(server, account, "public2", target_jpeg)
        for endpoint in ("GetImages", "Statistics", "ListChannels", "RemoveImage"):
            body = server.call(endpoint, {"channel": account.channel, "identifier": "public2"})
            assert body["returncode"] == 20001, (endpoint, body)
        body = server.call("FindImage", {"channel": account.channel}, files=jpeg(target_jpeg))
        assert body["returncode"] == 20001
