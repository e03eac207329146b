"""Image analysis with no knowledge of storage or HTTP: decode, features, rating, verification."""

from imagecloud.vision.decode import DecodedImage, decode_image, read_header, sniff_format
from imagecloud.vision.features import FeatureExtractor, Features, FeatureSettings
from imagecloud.vision.rating import Rating, rate
from imagecloud.vision.verify import Geometry, VerifySettings, verify

__all__ = [
    "DecodedImage",
    "FeatureExtractor",
    "FeatureSettings",
    "Features",
    "Geometry",
    "Rating",
    "VerifySettings",
    "decode_image",
    "rate",
    "read_header",
    "sniff_format",
    "verify",
]
