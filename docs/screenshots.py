"""Render pages of the built documentation in headless Chromium and save PNG screenshots.

Build the HTML first (``tox -e build_docs``, or ``sphinx-build -W --keep-going -b html .
_build/html`` in ``docs/``), then::

    python docs/screenshots.py                       # -> docs/_build/screenshots/*.png
    python docs/screenshots.py /tmp/shots --serve    # through a local HTTP server
    python docs/screenshots.py --pages index.html api.html auto_examples/plot_bpt.html

By default it captures the front page, the example gallery and one example page. It
needs Chromium (Debian: ``apt-get install -y chromium``); the browser is found as
``chromium``, ``chromium-browser``, ``google-chrome`` or through ``--chromium``. Each
page is rendered in a fresh, throw-away browser profile with networking features that
phone home switched off, so it works offline. The exit status is non-zero when a page is
missing or a screenshot could not be taken.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

DOCS = Path(__file__).resolve().parent
DEFAULT_HTML = DOCS / "_build" / "html"
DEFAULT_OUT = DOCS / "_build" / "screenshots"
DEFAULT_PAGES = ("index.html", "auto_examples/index.html", "auto_examples/plot_photoz_sdss.html")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(explicit: str | None = None) -> str:
    """Path of the Chromium executable; raises `FileNotFoundError` with install advice."""
    for name in ([explicit] if explicit else BROWSERS):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise FileNotFoundError(
        "no Chromium found (looked for " + ", ".join([explicit] if explicit else BROWSERS)
        + "); install it, e.g. 'apt-get install -y chromium', or pass --chromium PATH"
    )


def screenshot(browser: str, url: str, png: Path, window_size: str = "1280,1600", timeout: float = 120.0) -> None:
    """Render ``url`` and write the screenshot to ``png``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    with tempfile.TemporaryDirectory(prefix="galpost-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={window_size}",
            f"--screenshot={png}",
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"no screenshot of {url} (exit status {result.returncode}):\n{result.stderr[-2000:]}")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``folder`` on a free local port in a background thread; returns (server, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default=str(DEFAULT_OUT),
                        help="folder for the PNG files (default: %(default)s)")
    parser.add_argument("--html", default=str(DEFAULT_HTML), help="built HTML folder (default: %(default)s)")
    parser.add_argument("--pages", nargs="+", default=list(DEFAULT_PAGES),
                        help="pages to capture, relative to the HTML folder (default: %(default)s)")
    parser.add_argument("--serve", action="store_true",
                        help="load the pages from a local HTTP server instead of file:// URLs")
    parser.add_argument("--chromium", help="Chromium executable (default: found on PATH)")
    parser.add_argument("--window-size", default="1280,1600", help="WIDTH,HEIGHT in pixels (default: %(default)s)")
    args = parser.parse_args(argv)

    html, out = Path(args.html).resolve(), Path(args.out).resolve()
    if not (html / "index.html").is_file():
        print(f"screenshots: no built documentation in {html}; build it first (tox -e build_docs)", file=sys.stderr)
        return 2
    try:
        browser = find_browser(args.chromium)
    except FileNotFoundError as err:
        print(f"screenshots: {err}", file=sys.stderr)
        return 2

    server, base = serve(html) if args.serve else (None, None)
    failures = 0
    try:
        for page in args.pages:
            path = html / page
            if not path.is_file():
                print(f"screenshots: missing page {path}", file=sys.stderr)
                failures += 1
                continue
            url = base + page if base else path.as_uri()
            png = out / (page.replace("/", "__").removesuffix(".html") + ".png")
            try:
                screenshot(browser, url, png, args.window_size)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                print(f"screenshots: {err}", file=sys.stderr)
                failures += 1
                continue
            print(f"{url} -> {png}")
    finally:
        if server is not None:
            server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
