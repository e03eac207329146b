"""The API against its own OpenAPI description (schemathesis): generated requests for every form endpoint
never get a server error, and every answer matches the documented shape."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from imagecloud.api.openapi import ENDPOINTS
from tests.server import Account, ServerProcess


@pytest.fixture(scope="module")
def api_account(server: ServerProcess) -> Account:
    return server.new_account("openapi")


def _check(case: Any, server: ServerProcess, account: Account) -> None:
    if isinstance(case.body, dict) and case.body.get("username"):
        # Cases that send a username get the real account, so generation reaches past the 20001 check.
        case.body["username"] = account.username
        case.body["secretkey"] = account.secretkey
    if case.path == "/DeleteChannel" and isinstance(case.body, dict):
        case.body["channel"] = "kept-" + str(case.body.get("channel", ""))[:50]
    response = case.call(base_url=server.url, timeout=60)
    case.validate_response(
        response, checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
    )


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_answers_match_the_description(server: ServerProcess, api_account: Account, path: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").include(path_regex=f"^{path}$")
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) == 1

    @given(case=operations[0].as_strategy())
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        _check(case, server, api_account)

    run()
