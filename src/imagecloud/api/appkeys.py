"""``/CreateAppKey``, ``/ListAppKeys``, ``/RevokeAppKey`` (extensions, contract §5): the owner manages the
search-only keys apps and web pages carry instead of the secret key."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request

from imagecloud.api.forms import Form
from imagecloud.api.vendor import in_thread, vendor_endpoint
from imagecloud.service.service import Service

router = APIRouter()


@vendor_endpoint("/CreateAppKey", multipart_only=False, on=router)
async def create_app_key(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(
        service.appkeys.api_create,
        form.get("username"),
        form.get("secretkey"),
        form.get("name"),
        form.get("channels"),
    )
    return await in_thread(request, call, vision=False)


@vendor_endpoint("/ListAppKeys", multipart_only=False, on=router)
async def list_app_keys(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(service.appkeys.api_list, form.get("username"), form.get("secretkey"))
    return await in_thread(request, call, vision=False)


@vendor_endpoint("/RevokeAppKey", multipart_only=False, on=router)
async def revoke_app_key(request: Request, service: Service, form: Form) -> dict[str, Any]:
    call = partial(service.appkeys.api_revoke, form.get("username"), form.get("secretkey"), form.get("name"))
    return await in_thread(request, call, vision=False)
