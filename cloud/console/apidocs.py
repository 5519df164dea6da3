"""``/docs`` (Swagger UI) and ``/redoc`` from our own copies of swagger-ui-dist and redoc (npm,
cloud/console/vendor.py): they work without internet, where FastAPI's defaults load a CDN."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from cloud.console import static

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title="qadam API",
        swagger_js_url=static.url("vendor/swagger-ui-bundle.js"),
        swagger_css_url=static.url("vendor/swagger-ui.css"),
        swagger_favicon_url=static.url("favicon.svg"),
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title="qadam API",
        redoc_js_url=static.url("vendor/redoc.standalone.js"),
        redoc_favicon_url=static.url("favicon.svg"),
        with_google_fonts=False,
    )


@router.get("/static/{name:path}")
def static_file(name: str, request: Request) -> Response:
    return static.serve(name, request)
