"""The API reference at /docs (served with no network access) and the OpenAPI description behind it."""

from __future__ import annotations

import re

import httpx

from imagecloud.api.openapi import ENDPOINTS


class TestReferencePage:
    def test_every_asset_comes_from_this_server(self, server):
        page = httpx.get(f"{server.url}/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
        assert any(a.endswith("swagger-ui.css") for a in assets)
        assert "cdn" not in page.text.lower()
        for asset in assets:
            assert asset.startswith("/"), asset  # a path here, never another host
            response = httpx.get(f"{server.url}{asset}")
            assert response.status_code == 200 and len(response.content) > 100, asset

    def test_no_cdn_page_is_left(self, server):
        assert httpx.get(f"{server.url}/redoc").status_code == 404


class TestDescription:
    def test_named_operations_with_one_request_and_response_schema_each(self, server):
        document = httpx.get(f"{server.url}/openapi.json").json()
        schemas = document["components"]["schemas"]
        for path in ENDPOINTS:
            name = path.strip("/")
            operation = document["paths"][path]["post"]
            assert operation["operationId"] == name
            assert operation["summary"] and operation["description"]
            ref = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
            request = schemas[ref.rsplit("/", 1)[1]]
            for field_name, spec in request["properties"].items():
                assert spec.get("description"), (name, field_name)
            answer_ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            answer = schemas[answer_ref.rsplit("/", 1)[1]]
            assert answer["examples"][0]["returncode"] == 0
            assert set(answer["examples"][0]) <= set(answer["properties"]), name

    def test_extension_fields_are_described(self, server):
        schemas = httpx.get(f"{server.url}/openapi.json").json()["components"]["schemas"]
        assert "similar" in schemas["AddImageResponse"]["properties"]
        assert {"score", "corners", "results", "channel", "metadata"} <= set(
            schemas["FindImageResponse"]["properties"]
        )
        assert "searches" in schemas["StatisticsResponse"]["properties"]
        assert "appkey" in schemas["CreateAppKeyResponse"]["properties"]
        assert "keys" in schemas["ListAppKeysResponse"]["properties"]
        assert "count" in schemas["GetImagesRequest"]["properties"]
        assert "maxresults" in schemas["FindImageRequest"]["properties"]
