"""Finding out whether an ambiguous upload took effect, without asking the user.

The API documents no idempotency key (resell-scan-api.md §7, §9 #13), so a createAndAnalyze
whose answer was lost (5xx, timeout, dropped connection, a crash) is never resent blindly. But
the bot chooses every image's `fileName`, and the API lists a collection's products created
after a moment (`created_after`, ISO 8601, §2.2) and searches them. So it looks its own file
names up: not there after a settle delay and one re-check means the request never took effect
(resend it); there means the products exist and their analysis was started (attach its batch
by the product ids when the webhook comes, or analyse exactly those products).

Not documented: whether product listings show each image's file name (as `fileName`,
`file_name`, `name`, or as the last segment of its URL) and whether `search` covers it. So a
lookup that finds nothing proves nothing by itself: it is proof only when the listing was read
to its end (`Lookup.complete`) and the bot has seen listings show our file names on its own
earlier products (the account fact `listing_file_names`, bot/paid.py). Otherwise the user is
asked; a paid call is never repeated on a guess.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.images import is_heic
from bot.resellscan import ResellScanClient
from storage import Photo, Submission

SEARCH_PAGES = 3  # pages of search results to look through
LISTING_PAGES = 10  # pages of the plain listing (created after the request) when search fails
PAGE_SIZE = 100

_EXTENSIONS = {"image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}


NAME_PREFIX = "rsb-"  # every file name the bot gives an image starts so


def file_name_prefix(sub: Submission) -> str:
    """Unique to the submission (its id and a piece of its random idempotency key, so two
    bots on one account, or a reset database, do not collide)."""
    return f"{NAME_PREFIX}{sub.id}-{sub.idempotency_key[:8]}-"


def upload_file_name(sub: Submission, index: int, photo: Photo) -> str:
    """The `fileName` of the `index`-th photo of a submission: the prefix, the index, and the
    original extension (`.jpg` for HEIC, which is converted before upload)."""
    if is_heic(photo.mime_type, photo.file_name):
        ext = ".jpg"
    else:
        ext = os.path.splitext(photo.file_name or "")[1].lower() or _EXTENSIONS.get(
            photo.mime_type or "", ".jpg"
        )
    return f"{file_name_prefix(sub)}{index + 1}{ext}"


def file_names(sub: Submission, groups: Sequence[Sequence[Photo]]) -> list[list[str]]:
    """The file names of every product's photos, numbered across the submission."""
    out: list[list[str]] = []
    index = 0
    for group in groups:
        names = []
        for photo in group:
            names.append(upload_file_name(sub, index, photo))
            index += 1
        out.append(names)
    return out


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Lookup:
    product_ids: list[str]  # one per product found, in the submission's product order
    products_expected: int
    pages_read: int
    complete: bool = False  # the listing was read to its end (not cut off at a page limit)
    listed: bool = False  # it showed products at all
    named: bool = False  # some product listed showed one of our file names (any upload's)


async def find_products(
    client: ResellScanClient,
    collection_id: str,
    names: Sequence[Sequence[str]],
    prefix: str,
    created_after: float,
) -> Lookup:
    """Our products among the collection's products created after `created_after`: first
    narrowed by `search` on our file-name prefix, then, if that finds nothing (the search may
    not cover file names), through the plain listing. Raises the client's errors."""
    wanted = {name: index for index, group in enumerate(names) for name in group}
    found: dict[int, str] = {}
    pages = 0
    complete = listed = named = False
    for search, limit in ((prefix, SEARCH_PAGES), (None, LISTING_PAGES)):
        page = 1
        complete = False
        while page <= limit:
            result = await client.list_products(
                collection_id,
                page=page,
                limit=PAGE_SIZE,
                search=search,
                include_images=True,
                created_after=iso(created_after),
            )
            pages += 1
            for product in result.items:
                listed = True
                for name in product.file_names():
                    named = named or name.startswith(NAME_PREFIX)
                    index = wanted.get(name)
                    if index is not None:
                        found.setdefault(index, product.id)
            if not result.has_more or not result.items:
                complete = True  # read to its end
                break
            if len(found) == len(names):
                break
            page += 1
        if found:
            break
    ordered = [found[i] for i in sorted(found)]
    unique = list(dict.fromkeys(ordered))
    return Lookup(
        product_ids=unique,
        products_expected=len(names),
        pages_read=pages,
        complete=complete,
        listed=listed,
        named=named,
    )
