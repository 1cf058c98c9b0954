"""Serves netron's viewer offline from 127.0.0.1 with the current model, for the graph view.

netron's own page shows a consent screen, reports usage online and refuses to render ~180
days after its release. We serve its static files ourselves with a patched index.html: the
build date is the serving time, a served script sets the consent cookie, the version reads
0.0.0 (netron's switch for "not packaged": no telemetry) and a CSP keeps every fetch on this
server, so nothing leaves the machine even when the page is opened in an external browser.
"""

from __future__ import annotations

import http.server
import mimetypes
import re
import threading
import time
import urllib.parse
from pathlib import Path

import netron

NETRON_DIR = Path(netron.__file__).resolve().parent
CONSENT_SCRIPT = "cg-consent.js"
CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; font-src 'self' data:; frame-src 'none'"
)
_MIME = {".js": "text/javascript", ".json": "application/json", ".css": "text/css"}


def patched_index(model_name: str | None, now: float | None = None) -> str:
    """netron's index.html made offline, consent-free and dated now (see module docstring)."""
    html = (NETRON_DIR / "index.html").read_text(encoding="utf-8")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
    html = re.sub(
        r'<meta http-equiv="Content-Security-Policy" content="[^"]*">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        html,
    )
    meta = [
        '<meta name="type" content="Python">',
        '<meta name="version" content="0.0.0">',
    ]
    if model_name:
        quoted = urllib.parse.quote(model_name)
        meta.append(f'<meta name="file" content="/data/{quoted}">')
    html = re.sub(r'<meta name="version" content="[^"]*">', "\n".join(meta), html)
    html = re.sub(
        r'<meta name="date" content="[^"]*">', f'<meta name="date" content="{stamp}">', html
    )
    script = f'<script type="text/javascript" src="{CONSENT_SCRIPT}"></script>\n'
    index_tag = '<script type="text/javascript" src="index.js">'
    return html.replace(index_tag, script + index_tag, 1)


# netron skips its consent screen (and the ipinfo.io lookup before it) when this cookie is set
_CONSENT_JS = b"document.cookie = 'consent=' + Date.now() + ';path=/;max-age=31536000';\n"


class NetronServer:
    """A stdlib HTTP server in a daemon thread: netron's files plus the model's folder."""

    def __init__(self) -> None:
        self.model: Path | None = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                status, kind, body = server._respond(urllib.parse.urlparse(self.path).path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Security-Policy", CSP)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                """Quiet: the GUI has its own log."""

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="netron-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def set_model(self, path: Path | None) -> None:
        self.model = None if path is None else Path(path).resolve()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _respond(self, path: str) -> tuple[int, str, bytes]:
        if path in ("/", "/index.html"):
            name = self.model.name if self.model else None
            return 200, "text/html; charset=utf-8", patched_index(name).encode("utf-8")
        if path == f"/{CONSENT_SCRIPT}":
            return 200, "text/javascript", _CONSENT_JS
        if path.startswith("/data/") and self.model is not None:
            # the model and files beside it (external weights), nothing outside its folder
            file = _inside(self.model.parent, urllib.parse.unquote(path[len("/data/") :]))
        else:
            file = _inside(NETRON_DIR, urllib.parse.unquote(path.lstrip("/")))
        if file is None:
            return 404, "text/plain", b"not found"
        kind = _MIME.get(file.suffix) or mimetypes.guess_type(file.name)[0]
        return 200, kind or "application/octet-stream", file.read_bytes()


def _inside(folder: Path, relative: str) -> Path | None:
    """`folder/relative` if it is an existing file inside `folder` (no `..` escapes)."""
    candidate = (folder / relative).resolve()
    if candidate.is_file() and candidate.is_relative_to(folder):
        return candidate
    return None
