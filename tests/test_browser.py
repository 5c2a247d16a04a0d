"""The book as readers see it: every page loaded in headless Chromium, offline.

The book is built once (warnings are errors), served from ``_build/html`` on 127.0.0.1 and
every page is loaded in the system's Chromium through the DevTools protocol, with every host
but 127.0.0.1 unreachable. A page fails when it shows unrendered TeX, an image that did not
load, a mermaid block not turned into SVG, a link to a page or anchor that does not exist, a
JavaScript error in the console, a request that left the machine, an ipywidget that did not
render, a code line wider than its cell, or an errata table wider than the page. Screenshots
of the landing page, a chapter, a lab, the errata, a figure, a diagram and a widget land in
``ZEN_SCREENSHOTS`` (default ``_build/screenshots``) for a person to look at.

``ZEN_BOOK_HTML=path/to/_build/html`` tests an existing build instead of building one.
Without Chromium (``chromium``, Debian's package) the browser tests skip, saying so.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.book, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1440, 900  # a laptop screen (the CSS in _static/zen.css is made for it)
CODE_COLUMNS = 100  # ruff's line length (pyproject.toml): a code line this long must fit
# name -> (page, what to scroll into view first; None: the top of the page)
SCREENSHOTS = {
    "landing": ("book/intro.html", None),  # index.html redirects here
    "landing-diagram": ("book/intro.html", ".mermaid"),
    "chapter": ("book/attention.html", None),
    "chapter-figure": ("book/attention.html", "article .cell_output img"),
    "chapter-widget": ("book/parallelism.html", ".jupyter-widgets"),
    "lab": ("labs/attention.html", None),
    "errata": ("book/errata.html", "table.errata tbody tr:nth-child(4)"),
}


# ----------------------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built book's HTML folder (built here unless ZEN_BOOK_HTML names one)."""
    given = os.environ.get("ZEN_BOOK_HTML")
    if given:
        return Path(given).resolve()
    beside = Path(sys.executable).parent / "jupyter-book"  # a venv that is not activated
    jb = shutil.which("jupyter-book") or (str(beside) if beside.exists() else None)
    if jb is None:
        pytest.skip("jupyter-book is not installed (pip install -r requirements.txt)")
    out = tmp_path_factory.mktemp("book")
    cmd = [jb, "build", str(ROOT), "-W", "-n", "--keep-going"]
    cmd += ["--builder", "html", "--path-output", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "_build" / "html"


def test_book_builds_without_warnings(site):
    assert (site / "book" / "optimisation.html").exists()
    assert (site / "book" / "backprop.html").exists()
    page = (site / "book" / "optimisation.html").read_text()
    assert "<img" in page  # the committed figures are rendered


def test_the_site_loads_nothing_from_a_cdn(site):
    """MathJax, mermaid and the widget embedder are served from _static/vendor/."""
    vendor = site / "_static" / "vendor"
    for path in [
        "mathjax/tex-mml-chtml.js",
        "mermaid/mermaid.esm.min.mjs",
        "requirejs/require.js",
        "@jupyter-widgets/html-manager/dist/embed-amd.js",
    ]:
        assert (vendor / path).is_file(), f"_static/vendor/{path} is missing from the site"
    loads = re.compile(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["'](https?:)?//""")
    for page in _pages(site):
        html = (site / page).read_text(encoding="utf-8")
        assert not loads.search(html), f"{page} loads a file from the network"


REDIRECT = re.compile(r"""<meta http-equiv="Refresh" content="0; url=([^"]+)" />""", re.I)


def _pages(site: Path) -> list[str]:
    """Every page of the site but redirects (index.html), which must point at a page."""
    skip = ("_static/", "_sources/", "_images/", "_downloads/")
    pages = []
    for path in sorted(site.rglob("*.html")):
        page = path.relative_to(site).as_posix()
        if page.startswith(skip):
            continue
        redirect = REDIRECT.search(path.read_text(encoding="utf-8"))
        if redirect:
            target = (path.parent / redirect.group(1)).resolve()
            assert target.is_file(), f"{page} redirects to a missing page {redirect.group(1)}"
            continue
        pages.append(page)
    return pages


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


# -------------------------------------------------------------------- Chromium over CDP


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """Headless Chromium driven through the DevTools protocol (one tab)."""

    def __init__(self, executable: str, profile: Path) -> None:
        import websocket  # websocket-client (requirements-dev.txt)

        args = [
            executable,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            # no network: every host name but the test server's fails to resolve
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{executable} did not start (exit code {self.proc.poll()})")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            tab = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(
            tab["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not any(e["method"] == event for e in self.events):
            if time.monotonic() > deadline:
                return False
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = json.loads(self.ws.recv())
            except Exception:  # websocket timeout
                return False
            finally:
                self.ws.settimeout(60)
            if "method" in message:
                self.events.append(message)
        return True

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate",
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            timeout=60_000,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# Waits until MathJax has typeset, mermaid has drawn and the widgets are embedded.
SETTLE = r"""
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const deadline = Date.now() + 20000;
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const pending = () =>
    [...document.querySelectorAll(".mermaid")].some(
      (e) => !e.querySelector("svg") && !e.hasAttribute("data-mermaid-render-failed")) ||
    document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length >
      document.querySelectorAll(".jupyter-widgets.widget-container, .jupyter-widgets").length;
  while (pending() && Date.now() < deadline) await sleep(100);
  await sleep(100);
  return true;
})()
"""

# What a reader would see wrong on the page, as data.
INSPECT = r"""
(() => {
  const skip = "pre, code, script, style, textarea, noscript, mjx-container, .mermaid";
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!/\\\(|\\\[|\$\$/.test(node.nodeValue)) continue;
    if (node.parentElement.closest(skip)) continue;
    raw.push(node.nodeValue.trim().slice(0, 80));
  }
  const images = [...document.images]
    .filter((i) => !(i.complete && i.naturalWidth > 0))
    .map((i) => (i.getAttribute("src") || "").slice(0, 80));
  const mermaid = [...document.querySelectorAll(".mermaid")].filter((e) => !e.querySelector("svg"))
    .map((e) => e.textContent.trim().slice(0, 60));
  const views = document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]');
  const widgets = document.querySelectorAll(".jupyter-widgets").length;
  const ids = [...document.querySelectorAll("[id]")].map((e) => e.id)
    .concat([...document.querySelectorAll("a[name]")].map((a) => a.name));
  const links = [...document.querySelectorAll("a[href]")].map((a) => a.href);
  const wide = [];
  for (const pre of document.querySelectorAll("div.highlight pre")) {
    if (pre.clientWidth === 0 || pre.scrollWidth <= pre.clientWidth + 1) continue;
    const line = pre.textContent.split("\n").reduce((a, b) => (b.length > a.length ? b : a), "");
    wide.push(`${line.length} columns: ${line.trim().slice(0, 70)}`);
  }
  // How many characters of the code font fit in a code cell here (in the article).
  let columns = null;
  const pre = document.querySelector(
    "article div.cell_input div.highlight pre, article div.highlight pre");
  if (pre && pre.clientWidth > 0) {
    const probe = document.createElement("span");
    probe.textContent = "x".repeat(200);
    pre.appendChild(probe);
    const charWidth = probe.getBoundingClientRect().width / 200;
    probe.remove();
    const style = getComputedStyle(pre);
    const inner = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    columns = Math.floor(inner / charWidth + 1e-6);
  }
  // A table that must fit the article (the errata): wider than its box means a column is cut.
  const clipped = [...document.querySelectorAll("table.errata")]
    .filter((t) => t.scrollWidth > t.parentElement.clientWidth + 1)
    .map((t) => `${t.scrollWidth} px in ${t.parentElement.clientWidth} px`);
  return {raw, images, mermaid, views: views.length, widgets, ids, links, wide, columns, clipped};
})()
"""


SCROLL = """
(async (selector) => {
  const target = selector && document.querySelector(selector);
  if (target) target.scrollIntoView({block: "center"});
  else window.scrollTo(0, 0);
  await new Promise((r) => setTimeout(r, 300));
})(%s)
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = _chromium()
    if executable is None:
        reason = (
            "NO BROWSER: Chromium is not installed, so the book was NOT checked in a real "
            "browser (Debian/Ubuntu: apt-get install chromium; .ci/run installs it)"
        )
        print(f"\n*** {reason} ***")
        pytest.skip(reason)
    b = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def visits(site, server, browser) -> dict[str, dict]:
    """Every page loaded once: what it shows, logs and requests."""
    shots = Path(os.environ.get("ZEN_SCREENSHOTS") or ROOT / "_build" / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    results = {}
    for page in _pages(site):
        browser.events.clear()
        browser.call("Page.navigate", url=server + page)
        loaded = browser.wait_for("Page.loadEventFired", timeout=60)
        browser.evaluate(SETTLE)
        seen = browser.evaluate(INSPECT)
        seen["loaded"] = loaded
        seen["errors"] = _console_errors(browser.events)
        seen["requests"] = sorted(
            {
                e["params"]["request"]["url"]
                for e in browser.events
                if e["method"] == "Network.requestWillBeSent"
                and not e["params"]["request"]["url"].startswith((server, "data:", "blob:"))
            }
        )
        results[page] = seen
        for name, (target, selector) in SCREENSHOTS.items():
            if target == page:
                browser.evaluate(SCROLL % json.dumps(selector))
                browser.screenshot(shots / f"{name}.png")
    return results


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for e in events:
        p = e["params"]
        if e["method"] == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append(d.get("exception", {}).get("description") or d.get("text", ""))
        elif e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"{p['entry']['text']} {p['entry'].get('url', '')}".strip())
    return [line.splitlines()[0][:200] if line else "(empty)" for line in errors]


def _report(visits: dict[str, dict], key: str) -> str:
    return "\n".join(f"{page}: {visits[page][key]}" for page in visits if visits[page][key])


def test_every_page_loads(visits):
    assert len(visits) >= 20, sorted(visits)
    assert all(v["loaded"] for v in visits.values()), [
        p for p, v in visits.items() if not v["loaded"]
    ]


def test_no_page_reaches_the_network(visits):
    assert not _report(visits, "requests"), "requests that left 127.0.0.1:\n" + _report(
        visits, "requests"
    )


def test_no_javascript_errors(visits):
    assert not _report(visits, "errors"), "console errors:\n" + _report(visits, "errors")


def test_math_is_typeset(visits):
    assert not _report(visits, "raw"), "TeX left unrendered:\n" + _report(visits, "raw")


def test_images_load(visits):
    assert not _report(visits, "images"), "images that did not load:\n" + _report(visits, "images")


def test_mermaid_diagrams_are_drawn(visits):
    assert not _report(visits, "mermaid"), "mermaid blocks left as text:\n" + _report(
        visits, "mermaid"
    )


def test_widgets_render(visits):
    missing = {p: v for p, v in visits.items() if v["views"] > v["widgets"]}
    assert not missing, (
        "ipywidgets not rendered (views, rendered): "
        f"{ {p: (v['views'], v['widgets']) for p, v in missing.items()} }"
    )


def test_internal_links_and_anchors_exist(site, server, visits):
    broken = []
    for page, v in visits.items():
        for link in v["links"]:
            if not link.startswith(server):
                continue
            url = urllib.parse.urlsplit(link)
            path = urllib.parse.unquote(url.path).lstrip("/") or "index.html"
            if path.endswith("/"):
                path += "index.html"
            if not (site / path).exists():
                broken.append(f"{page} -> {link[len(server) :]} (no such file)")
            elif url.fragment and path in visits:
                anchor = urllib.parse.unquote(url.fragment)
                if anchor not in visits[path]["ids"]:
                    broken.append(f"{page} -> {link[len(server) :]} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))


def test_code_lines_fit_their_cells(visits):
    """No code line is cut at the cell's edge (outputs wrap: _static/zen.css).

    A failure names the page and the line: break it within 100 columns (ruff's line length;
    about 102 fit at this width), in the notebook or, for a lab, in labs/source/ and then
    `zen lab release`.
    """
    assert not _report(visits, "wide"), (
        f"code lines wider than their cell at a {WIDTH}px wide window:\n" + _report(visits, "wide")
    )


def test_a_line_of_the_linters_length_fits_a_code_cell(visits):
    columns = {p: v["columns"] for p, v in visits.items() if v["columns"] is not None}
    assert columns, "no code cell found"
    narrow = {p: c for p, c in columns.items() if c < CODE_COLUMNS}
    assert not narrow, f"code cells narrower than {CODE_COLUMNS} columns: {narrow}"


def test_the_errata_table_fits_the_page(visits):
    assert visits["book/errata.html"]["clipped"] == [], visits["book/errata.html"]["clipped"]


def test_screenshots_are_written(visits):
    shots = Path(os.environ.get("ZEN_SCREENSHOTS") or ROOT / "_build" / "screenshots")
    for name in SCREENSHOTS:
        png = shots / f"{name}.png"
        assert png.exists() and png.stat().st_size > 10_000, png
