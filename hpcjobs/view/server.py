"""The ``hpcjobs view`` web server: the page, and the data it asks for, on loopback only.

Standard library only (``http.server.ThreadingHTTPServer``): one thread per request, bound
to ``127.0.0.1``. Every request needs the server's random token, as Jupyter does: in the
query (``?token=...``, what the printed URL holds) or in the cookie the page's first answer
sets; without it the answer is 403 and no data. Tokens are compared with
``hmac.compare_digest``.

Routes (all GET):

``/``                                         the page (``static/index.html``)
``/static/NAME``                              the page's script and style
``/api/summary``                              steps, provenance and each step's view
``/api/tile/STEP/Z/X/Y.png?how=&cmap=``       a 256 x 256 map tile (``tiles.MapSource``)
``/api/series/STEP/SOURCE?x0=&x1=&n=``        a series window (``series.SeriesSource``)
``/api/scatter/STEP/points``                  a small embedding's points
``/api/scatter/STEP/image.png?x0=&x1=&y0=&y1=&w=&h=``  a large one aggregated to pixels
``/api/stats``                                requests served by kind, cache use
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections import Counter, OrderedDict
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from hpcjobs.view.chunks import shared_cache
from hpcjobs.view.png import encode_png
from hpcjobs.view.result import Result

COOKIE = "hpcjobs_view_token"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
HOWS = ("linear", "log", "eq_hist")


class BadRequest(ValueError):
    """A request the page should never make: 400 with the message."""


class ViewServer:
    """Serve one result at ``http://127.0.0.1:PORT/?token=TOKEN`` (port 0: any free one)."""

    def __init__(self, result: str | Path, *, port: int = 0, token: str | None = None,
                 log=None, png_cache: int = 512):
        self.result = Result(result)
        self.token = token or secrets.token_urlsafe(24)
        self.counts: Counter = Counter()
        self.log = log
        self._pngs: OrderedDict = OrderedDict()
        self.png_cache = png_cache  # tiles kept encoded (0: none, for benchmarks)
        self._png_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"view": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None
        self.result.start_summaries()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def start(self) -> ViewServer:
        """Serve in a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="hpcjobs-view")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()
        self.result.close()

    # -- answers ---------------------------------------------------------------------------

    def allowed(self, query: dict, cookie_header: str | None) -> bool:
        given = query.get("token", [None])[0]
        if given is None and cookie_header:
            morsel = SimpleCookie(cookie_header).get(COOKIE)
            given = morsel.value if morsel else None
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def tile(self, step: str, z: int, x: int, y: int, how: str, cmap: str) -> bytes:
        key = (step, z, x, y, how, cmap)
        with self._png_lock:
            found = self._pngs.get(key)
            if found is not None:
                self._pngs.move_to_end(key)
                return found
        src = self.result.map_source(step)
        if not 0 <= z <= src.describe()["top_zoom"]:
            raise BadRequest(f"zoom {z} is outside 0 .. {src.describe()['top_zoom']}")
        png = encode_png(src.tile_rgba(z, x, y, how, cmap))
        with self._png_lock:
            self._pngs[key] = png
            while len(self._pngs) > self.png_cache:
                self._pngs.popitem(last=False)
        return png

    def stats(self) -> dict:
        cache = shared_cache()
        return {"requests": dict(self.counts), "chunk_cache": {
            "bytes": cache.nbytes, "budget": cache.budget, "hits": cache.hits,
            "misses": cache.misses}}


def _number(query: dict, name: str, kind=float, default=None):
    raw = query.get(name, [None])[0]
    if raw is None:
        if default is None:
            raise BadRequest(f"missing query parameter {name!r}")
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r}: expected a number, got {raw!r}") from None
    if kind is float and value != value:
        raise BadRequest(f"query parameter {name!r} is NaN")
    return value


class _Handler(BaseHTTPRequestHandler):
    view: ViewServer
    server_version = "hpcjobs-view"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if self.view.log is not None:
            self.view.log(format % args)

    def do_GET(self):  # noqa: N802 - the base class's name
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self.view.allowed(query, self.headers.get("Cookie")):
            self.view.counts["refused"] += 1
            return self._send(HTTPStatus.FORBIDDEN, b"403: this page needs the token that "
                              b"`hpcjobs view` printed (open the URL it printed)\n",
                              "text/plain; charset=utf-8")
        path = [unquote(p) for p in parts.path.split("/") if p]
        t0 = time.perf_counter()
        try:
            self._route(path, query)
        except BadRequest as exc:
            self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
        except KeyError as exc:
            self._json({"error": str(exc.args[0] if exc.args else exc)}, HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # noqa: BLE001 - a bug: said in the answer, the server goes on
            self._json({"error": f"{type(exc).__name__}: {exc}"},
                       HTTPStatus.INTERNAL_SERVER_ERROR)
        finally:
            self.view.counts["seconds"] += time.perf_counter() - t0

    def _route(self, path: list[str], query: dict) -> None:
        v = self.view
        if not path:
            v.counts["page"] += 1
            return self._static("index.html", set_cookie=True)
        head, rest = path[0], path[1:]
        if head == "static" and len(rest) == 1:
            return self._static(rest[0])
        if head != "api" or not rest:
            raise KeyError(f"no such page: /{'/'.join(path)}")
        kind, args = rest[0], rest[1:]
        if kind == "summary":
            return self._json(v.result.summary())
        if kind == "stats":
            return self._json(v.stats())
        if kind == "tile" and len(args) == 4 and args[3].endswith(".png"):
            try:
                z, x, y = int(args[1]), int(args[2]), int(args[3][:-4])
            except ValueError:
                raise BadRequest("tile address: expected /api/tile/STEP/Z/X/Y.png with "
                                 "integers") from None
            how = query.get("how", ["eq_hist"])[0]
            cmap = query.get("cmap", ["viridis"])[0]
            if how not in HOWS:
                raise BadRequest(f"how: expected one of {', '.join(HOWS)}, got {how!r}")
            from hpcjobs.kernels.viz.shade import COLORMAPS

            if cmap not in COLORMAPS:
                raise BadRequest(f"cmap: expected one of {', '.join(COLORMAPS)}, got {cmap!r}")
            v.counts["tile"] += 1
            return self._send(HTTPStatus.OK, v.tile(args[0], z, x, y, how, cmap), "image/png")
        if kind == "series" and len(args) == 2:
            src = v.result.series_source(args[0], args[1])
            n = _number(query, "n", int, 1000)
            v.counts["window"] += 1
            return self._json(src.window(_number(query, "x0"), _number(query, "x1"), n))
        if kind == "scatter" and len(args) == 2:
            src = v.result.scatter_source(args[0])
            if args[1] == "points":
                v.counts["scatter"] += 1
                return self._json(src.points())
            if args[1] == "image.png":
                rng = [[_number(query, "x0"), _number(query, "x1")],
                       [_number(query, "y0"), _number(query, "y1")]]
                if not (rng[0][0] < rng[0][1] and rng[1][0] < rng[1][1]):
                    raise BadRequest("scatter range: expected x0 < x1 and y0 < y1")
                w, h = _number(query, "w", int), _number(query, "h", int)
                if not (1 <= w <= 4096 and 1 <= h <= 4096):
                    raise BadRequest("scatter size: expected 1 <= w, h <= 4096")
                v.counts["scatter"] += 1
                return self._send(HTTPStatus.OK, encode_png(src.image(rng, w, h)), "image/png")
        raise KeyError(f"no such page: /{'/'.join(path)}")

    def _static(self, name: str, set_cookie: bool = False) -> None:
        suffix = Path(name).suffix
        node = resources.files("hpcjobs.view").joinpath("static", name)
        if suffix not in STATIC_TYPES or "/" in name or not node.is_file():
            raise KeyError(f"no such file: {name}")
        headers = {}
        if set_cookie:
            headers["Set-Cookie"] = (f"{COOKIE}={self.view.token}; Path=/; HttpOnly; "
                                     "SameSite=Strict")
        self._send(HTTPStatus.OK, node.read_bytes(), STATIC_TYPES[suffix], headers)

    def _json(self, obj, status=HTTPStatus.OK) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _send(self, status, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, val in (headers or {}).items():
            self.send_header(k, val)
        self.end_headers()
        self.wfile.write(body)
