"""HTTP layer: parses forms, calls the service, shapes vendor JSON. Knows nothing about images or SQL."""

from imagecloud.api.app import create_app

__all__ = ["create_app"]
