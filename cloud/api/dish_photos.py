"""Dish photos (D28-D): ``PUT /api/v1/dishes/{id}/photo`` takes a multipart upload (field
``photo``: JPEG, PNG or WebP by content, at most 8 MB), keeps it re-encoded without metadata
(cloud/domain/dish_photos.py) and sets the dish's ``photo_url``; ``GET /media/dishes/{name}``
serves the 800 px JPEG or its 200 px thumbnail to anyone, cached for a year (the URL names the
content's hash; dishes are not personal data, D28-D)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Path, Request, UploadFile
from fastapi.responses import Response

from cloud.api.canteen import DishOut
from cloud.api.deps import ConnDep, SchoolAdmin, SettingsDep
from cloud.api.models import IdPath
from cloud.domain import dish_photos, dishes

router = APIRouter(prefix="/api/v1", tags=["menu"])
media = APIRouter(include_in_schema=False)
YEAR = 365 * 24 * 3600


def read_upload(upload: UploadFile) -> bytes:
    """At most MAX_BYTES + 1 bytes: more is refused without reading it all into memory."""
    return upload.file.read(dish_photos.MAX_BYTES + 1)


@router.put("/dishes/{dish_id}/photo", response_model=DishOut)
def put_dish_photo(
    conn: ConnDep,
    p: SchoolAdmin,
    s: SettingsDep,
    dish_id: IdPath,
    photo: Annotated[UploadFile, File(description="JPEG, PNG or WebP, at most 8 MB")],
) -> DishOut:
    """Replace the dish's photo. The image is decoded (not trusted by its name or type),
    turned upright, stripped of EXIF and other metadata, and kept at 800 px and 200 px;
    ``photo_url`` becomes ``/media/dishes/<hash>.jpg``. A file that is not such an image is
    422 and changes nothing."""
    return DishOut.model_validate(
        dishes.set_photo(conn, p, dish_id, read_upload(photo), s.menu_days_ahead)
    )


NamePath = Annotated[str, Path(min_length=36, max_length=40)]


@media.get("/media/dishes/{photo_name}")
def get_dish_photo(conn: ConnDep, photo_name: NamePath, request: Request) -> Response:
    body = dish_photos.load(conn, photo_name)
    if body is None:
        return Response("no such photo", status_code=404, media_type="text/plain")
    etag = f'"{photo_name.split(".")[0]}"'
    headers = {"Cache-Control": f"public, max-age={YEAR}, immutable", "ETag": etag,
               "X-Content-Type-Options": "nosniff"}  # fmt: skip
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="image/jpeg", headers=headers)
