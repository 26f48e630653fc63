"""Seeded, deterministic sandbox data: collections, their manual fields, and analysis results.

The shapes here are the sandbox's answers to questions the vendor docs leave open (field names of
collections and manual fields, the contents of `result`): the bot must parse them tolerantly, so
the sandbox deliberately uses camelCase for REST objects and snake_case for results, as the
webhook payload does.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = uuid.UUID("6f1c2a7e-3b0d-4a52-9a51-2f8d9b7c1e40")

COLLECTION_NAMES = [
    "Sneakers",
    "Sneakers Limited",
    "Vintage Clothing",
    "Vintage Furniture",
    "Trading Cards",
    "Trading Cards Japan",
    "Electronics",
    "Electronics Parts",
    "Books",
    "Board Games",
    "Video Games",
    "Retro Consoles",
    "Watches",
    "Jewelry",
    "Handbags",
    "Toys",
    "LEGO Sets",
    "Vinyl Records",
    "Cameras",
    "Kitchenware",
    "Tools",
    "Sports Gear",
    "Bicycles",
    "Art Prints",
    "Comics",
    "Coins",
    "Stamps",
    "Perfume",
    "Sunglasses",
    "Outdoor Equipment",
]

# Which fields each collection requires; all others optional.
REQUIRED = {
    "Sneakers": ["purchasePrice"],
    "Sneakers Limited": ["purchasePrice", "size"],
    "Trading Cards": ["condition"],
    "Watches": ["purchasePrice", "boxIncluded"],
}

CONDITIONS = ["new", "like_new", "used", "defective"]

BRANDS = [
    "Nike",
    "Adidas",
    "Sony",
    "Nintendo",
    "Levi's",
    "Omega",
    "Canon",
    "LEGO",
    "Puma",
    "Pokémon",
    "Bosch",
    "Ray-Ban",
    "Chanel",
    "Carhartt",
    "Fender",
    "Apple",
]
NOUNS = [
    "Classic",
    "Limited Edition",
    "Vintage",
    "Pro",
    "Original",
    "Deluxe",
    "Retro",
    "Special",
    "Collector's",
    "Standard",
]
RESULT_CONDITIONS = ["new", "like new", "good", "fair", "worn"]


@dataclass(frozen=True)
class FieldDef:
    key: str
    label: str
    type: str
    required: bool = False
    options: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(NAMESPACE, f"field:{self.key}")),
            "key": self.key,
            "label": self.label,
            "type": self.type,
            "required": self.required,
            "options": list(self.options),
        }


@dataclass(frozen=True)
class CollectionDef:
    id: str
    name: str
    fields: list[FieldDef]
    created_at: str

    def as_json(self, product_count: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": f"{self.name} (sandbox)",
            "productCount": product_count,
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
        }


def collection_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"collection:{name}"))


def seed_collections() -> list[CollectionDef]:
    out = []
    for index, name in enumerate(COLLECTION_NAMES):
        required = set(REQUIRED.get(name, []))
        fields = [
            FieldDef(
                "purchasePrice", "Purchase price (EUR)", "number", "purchasePrice" in required
            ),
            FieldDef("size", "Size", "text", "size" in required),
            FieldDef("quantity", "Quantity", "integer", "quantity" in required),
            FieldDef("boxIncluded", "Original box", "boolean", "boxIncluded" in required),
            FieldDef("condition", "Condition", "select", "condition" in required, CONDITIONS),
        ]
        if index % 3 == 2:  # some collections have fewer fields
            fields = [f for f in fields if f.key != "size" or f.required]
        created = f"2025-0{1 + index % 9}-{10 + index % 18:02d}T09:00:00.000Z"
        out.append(CollectionDef(collection_id(name), name, fields, created))
    return out


def analyse(images: list[bytes], collection_name: str, failure_rate: float) -> dict[str, Any]:
    """A deterministic per-product outcome from the image bytes.

    An image containing the bytes `FAIL` always fails, so tests can ask for a failure; one
    containing `TITLE:<utf-8 text>\n` is given that title (umlauts, emoji: whatever a test
    needs to find again)."""
    digest = hashlib.sha256(b"\x00".join(images)).digest()
    roll = int.from_bytes(digest[:4], "big") / 2**32
    if any(b"FAIL" in image for image in images) or roll < failure_rate:
        return {
            "status": "failed",
            "result": {},
            "error": {"code": "analysis_failed", "message": "The item could not be recognised"},
        }
    brand = BRANDS[digest[4] % len(BRANDS)]
    low = 5 + digest[6] % 200
    high = low + 5 + digest[7] % 120
    return {
        "status": "completed",
        "error": None,
        "result": {
            "title": _title_in(images)
            or f"{brand} {NOUNS[digest[5] % len(NOUNS)]} {collection_name.split()[0]}",
            "brand": brand,
            "category": collection_name,
            "condition": RESULT_CONDITIONS[digest[8] % len(RESULT_CONDITIONS)],
            "estimatedPrice": {"min": low, "max": high, "currency": "EUR"},
            "confidence": round(0.55 + digest[9] / 255 * 0.44, 2),
        },
    }


def _title_in(images: list[bytes]) -> str | None:
    for image in images:
        start = image.find(b"TITLE:")
        if start >= 0:
            end = image.find(b"\n", start)
            return image[start + 6 : end if end >= 0 else None].decode("utf-8", "replace")
    return None


def sniff_image(data: bytes) -> str | None:
    """The image MIME type from magic bytes, or None when it is not an image we accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def fake_jpeg(seed: str, size: int = 2048) -> bytes:
    """Bytes that start like a JPEG, unique per seed (for tests and the demo)."""
    body = hashlib.sha256(seed.encode()).digest() * (size // 32 + 1)
    return b"\xff\xd8\xff\xe0" + body[: max(0, size - 6)] + b"\xff\xd9"


async def read_json(request: Any) -> dict[str, Any]:
    """A control request's JSON object body; {} when it is missing or not an object."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
