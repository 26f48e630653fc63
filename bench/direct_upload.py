"""A baseline for the intake benchmark: a plain httpx client that does what the bot must do to
bring a burst of albums to Resell Scan, and nothing else: for each album, fetch its photos from
Telegram the way a bot does (getFile, then the file download over HTTP) and POST
/products/createAndAnalyze with the same products and images, `concurrency` albums at a time.

With image URLs (the bot's PUBLIC_BASE_URL), the photos are not fetched before the request: the
client serves them itself, like the bot's /media/ route (getFile and the download when Resell
Scan fetches the URL), and sends the URLs. With base64, they are fetched first and sent inline
(`data_uri` in `url`, or a `base64` field)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.server import bind, make_server

API_KEY = "rs_test_full"


@dataclass(frozen=True)
class Product:
    images: list[str]  # the fileName of each image
    manual_fields: dict[str, Any]
    remove_background: bool = False


@dataclass(frozen=True)
class Album:
    collection_id: str
    products: list[Product]


def albums_from_requests(requests: list[dict[str, Any]]) -> list[Album]:
    """The albums a bot uploaded, from the sandbox's request log (GET /sandbox/requests): one per
    idempotency key that succeeded, each with its products and the number of their images."""
    seen: set[str] = set()
    albums = []
    for entry in requests:
        if entry.get("path") != "/products/createAndAnalyze" or entry.get("status") not in (
            200,
            201,
        ):
            continue
        key = entry.get("idempotency_key") or f"#{len(seen)}"
        if key in seen or not isinstance(entry.get("body"), dict):
            continue
        seen.add(key)
        body = entry["body"]
        products = [
            Product(
                images=[str(i.get("fileName") or f"p{n}.jpg") for n, i in enumerate(p["images"])],
                manual_fields=dict(p.get("manual_fields") or {}),
                remove_background=any(bool(i.get("removeBackground")) for i in p["images"]),
            )
            for p in body.get("products", [])
        ]
        albums.append(Album(str(body["collectionId"]), products))
    return albums


class _Telegram:
    """getFile and the download, as a bot does them (PTB: POST getFile, GET the file URL)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: str) -> None:
        self.http, self.base_url, self.token = http, base_url, token

    async def file_url(self, file_id: str) -> str:
        answer = await self.http.post(
            f"{self.base_url}/bot{self.token}/getFile", data={"file_id": file_id}
        )
        answer.raise_for_status()
        path = answer.json()["result"]["file_path"]
        return f"{self.base_url}/file/bot{self.token}/{path}"

    async def download(self, file_id: str) -> bytes:
        response = await self.http.get(await self.file_url(file_id))
        response.raise_for_status()
        return response.content


async def upload(
    base_url: str,
    token: str,
    albums: list[Album],
    file_ids: list[str],
    *,
    concurrency: int,
    image_urls: bool,
    base64_field: str = "data_uri",
) -> tuple[float, float, int]:
    """Upload every album; (start, last answer, requests that failed), wall-clock seconds. The
    i-th image overall is the photo file_ids[i % len(file_ids)]."""
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    tg_http = httpx.AsyncClient(timeout=30, limits=limits)
    rs_http = httpx.AsyncClient(
        base_url=base_url + "/api/v1",
        timeout=60,
        limits=limits,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    telegram = _Telegram(tg_http, base_url, token)
    media: dict[str, str] = {}  # key in the URL -> Telegram file id
    server = None
    serving: asyncio.Task[None] | None = None
    media_url = ""
    if image_urls:

        async def media_file(request: Request) -> Response:
            file_id = media.get(request.path_params["key"])
            if file_id is None:
                return Response(b"not found", status_code=404)
            return Response(await telegram.download(file_id), media_type="image/jpeg")

        sock = bind("127.0.0.1", 0)
        media_url = f"http://127.0.0.1:{sock.getsockname()[1]}/media/"
        server = make_server(Starlette(routes=[Route("/media/{key}", media_file)]))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(2000):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.005)
    queue: asyncio.Queue[tuple[int, Album]] = asyncio.Queue()
    image_index = 0
    for album in albums:
        queue.put_nowait((image_index, album))
        image_index += sum(len(p.images) for p in album.products)
    failures = 0
    last = 0.0

    async def image(index: int, name: str, remove_background: bool) -> dict[str, Any]:
        file_id = file_ids[index % len(file_ids)]
        entry: dict[str, Any] = {"fileName": name, "removeBackground": remove_background}
        if image_urls:
            key = uuid.uuid4().hex
            media[key] = file_id
            entry["url"] = media_url + key
            return entry
        encoded = base64.b64encode(await telegram.download(file_id)).decode("ascii")
        if base64_field == "base64":
            entry.update(base64=encoded, mimeType="image/jpeg")
        else:
            entry["url"] = f"data:image/jpeg;base64,{encoded}"
        return entry

    async def worker() -> None:
        nonlocal failures, last
        while True:
            try:
                first, album = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            products, index = [], first
            for product in album.products:
                images = []
                for name in product.images:
                    images.append(await image(index, name, product.remove_background))
                    index += 1
                products.append({"images": images, "manual_fields": product.manual_fields})
            response = await rs_http.post(
                "/products/createAndAnalyze",
                json={"collectionId": album.collection_id, "products": products},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            if response.status_code not in (200, 201):
                failures += 1
            last = max(last, time.time())

    started = time.time()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await tg_http.aclose()
        await rs_http.aclose()
        if server is not None and serving is not None:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
    return started, last, failures
