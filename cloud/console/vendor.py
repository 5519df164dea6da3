"""Third-party front-end files the console serves, from npm (package.json, package-lock.json).

``./dev`` runs ``npm ci`` when node_modules is missing or the lock changed, then
``python -m cloud.console.vendor``, which copies the allow-listed files below into
``cloud/console/static/vendor/`` (git-ignored): nothing third-party is committed and nothing
comes from a CDN at run time (D27-E). The pages link them with ``?_hash=``
(cloud/console/static.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
NODE_MODULES = REPO / "node_modules"
VENDOR = Path(__file__).resolve().parent / "static" / "vendor"

_FONT = "@fontsource/noto-sans/files/noto-sans-{}-{}-normal.woff2"
# Noto Sans covers Kazakh across three subsets (research/ui.md §4): cyrillic (і ұ), cyrillic-ext
# (ә ғ қ ң ө ү һ) and latin-ext (₸); latin for the rest.
FONTS = {
    f"noto-sans-{subset}-{weight}.woff2": _FONT.format(subset, weight)
    for subset in ("latin", "latin-ext", "cyrillic", "cyrillic-ext")
    for weight in (400, 700)
}
# name served under /static/vendor/ -> path under node_modules
FILES: dict[str, str] = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
    "redoc.standalone.js": "redoc/bundles/redoc.standalone.js",
    **FONTS,
}


# Links out of the machine inside a vendored file, pointed at our own (the console works with no
# internet, and an image that fails offline is a console error). A version whose file no longer
# has the link fails the copy, so the rewrite is looked at again.
REWRITES: dict[str, list[tuple[bytes, bytes]]] = {
    # redoc's "API docs by Redocly" footer logo
    "redoc.standalone.js": [(b"https://cdn.redoc.ly/redoc/logo-mini.svg", b"/static/favicon.svg")],
}


def missing() -> list[str]:
    """Vendor files the console needs that are not in place (run ./dev to copy them)."""
    return [name for name in FILES if not (VENDOR / name).is_file()]


def copy(node_modules: Path = NODE_MODULES, dest: Path = VENDOR) -> int:
    """Copy the allow-listed files; a file npm did not install is an error naming it."""
    absent = [src for src in FILES.values() if not (node_modules / src).is_file()]
    if absent:
        raise FileNotFoundError("not in node_modules (run npm ci): " + ", ".join(absent))
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in FILES.items():
        data = (node_modules / src).read_bytes()
        for old, new in REWRITES.get(name, []):
            if old not in data:
                raise FileNotFoundError(f"{src} no longer links {old.decode()}: check REWRITES")
            data = data.replace(old, new)
        (dest / name).write_bytes(data)
    for stale in dest.iterdir():
        if stale.name not in FILES:
            stale.unlink()
    return len(FILES)


if __name__ == "__main__":
    try:
        n = copy()
    except FileNotFoundError as e:
        print(f"console vendor files: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"console vendor files: {n} copied to {VENDOR.relative_to(REPO)}")
