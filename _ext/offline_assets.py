"""Serve MathJax, mermaid and the ipywidgets embedder from the built site, not from a CDN.

The book must read offline (issue 18): every formula, diagram and widget script a page needs
lies under ``_build/html/_static/vendor/``. The files come from the npm registry at build
time: ``npm pack`` fetches each pinned package once into ``_build/vendor/`` (a cache that
later builds reuse), and the subset a page needs is copied into the site through
``html_static_path``. ``_config.yml`` points ``mathjax_path``, ``mermaid_use_local`` and
``nb_ipywidgets_js`` at those copies.

Without ``npm`` the build stops with a message saying what to install; ``ZEN_BOOK_CDN=1``
builds a site that loads the three from public CDNs instead (it then needs the internet to
read). ``ZEN_VENDOR_DIR`` moves the cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent

MATHJAX = "mathjax@3.2.2"
MERMAID = "mermaid@10.9.1"
REQUIREJS = "requirejs@2.3.8"
HTML_MANAGER = "@jupyter-widgets/html-manager@1.0.15"

# npm package -> (folder under _static/vendor/, the files of the package to serve)
FONT = re.compile(r"\.(woff2?|ttf|eot|svg)$")


def _mathjax(rel: str) -> bool:
    # The combined TeX+MathML component with CommonHTML output, and what it loads on demand:
    # fonts, TeX extensions (autoload), the menu's accessibility parts.
    if not rel.startswith("es5/"):
        return False
    rel = rel[4:]
    if "/" not in rel:
        return rel == "tex-mml-chtml.js"
    return not rel.startswith("output/svg")


def _html_manager(rel: str) -> bool:
    return rel == "dist/embed-amd.js" or (rel.startswith("dist/") and bool(FONT.search(rel)))


PACKAGES = {
    MATHJAX: ("mathjax", _mathjax, "es5/"),
    MERMAID: ("mermaid", None, "dist/"),  # None: the ES-module graph of mermaid.esm.min.mjs
    REQUIREJS: ("requirejs", lambda rel: rel == "require.js", ""),
    # where the embedder's require.js module id puts it: it finds its icon fonts beside it
    HTML_MANAGER: ("@jupyter-widgets/html-manager/dist", _html_manager, "dist/"),
}

CDN = {
    "mathjax_path": "https://cdn.jsdelivr.net/npm/mathjax@3.2.2/es5/tex-mml-chtml.js",
    "mermaid_use_local": "https://cdn.jsdelivr.net/npm/mermaid@10.9.1/dist/mermaid.esm.min.mjs",
    "nb_ipywidgets_js": {
        "widgets-offline.js": {},
        "https://cdn.jsdelivr.net/npm/requirejs@2.3.8/require.js": {},
        "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.15/dist/embed-amd.js": {
            "data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/",
            "crossorigin": "anonymous",
        },
    },
}

IMPORT = re.compile(r"""(?:from\s*|import\s*\(\s*|import\s+)["'](\./[^"']+)["']""")


def _module_graph(dist: Path, entry: str) -> set[str]:
    """The files an ES module imports, statically or dynamically, relative to ``dist``."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = (dist / name).read_text(encoding="utf-8")
        todo.extend(m[2:] for m in IMPORT.findall(text))
    return seen


def _npm_pack(spec: str, into: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise ExtensionError(
            "the book serves MathJax, mermaid and the widget scripts from its own site, and "
            f"fetches them with npm at the first build ({spec} is missing from the cache); "
            "npm was not found: install Node.js's npm (Debian/Ubuntu: sudo apt-get install "
            "npm), or build with ZEN_BOOK_CDN=1 for a site that loads them from CDNs"
        )
    result = subprocess.run(
        [npm, "pack", spec, "--silent", "--pack-destination", str(into)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise ExtensionError(f"npm pack {spec} failed:\n{result.stderr[-2000:]}")
    return into / result.stdout.strip().splitlines()[-1]


def _vendor(spec: str, static_root: Path) -> None:
    """Unpack the files a page needs from one npm package into static_root/vendor/<folder>."""
    folder, keep, strip = PACKAGES[spec]
    dest = static_root / "vendor" / folder
    stamp = dest / "VERSION.txt"
    if stamp.exists() and stamp.read_text().strip() == spec:
        return
    logger.info(f"offline_assets: fetching {spec} from the npm registry")
    with tempfile.TemporaryDirectory(dir=static_root.parent) as tmp:
        tmp = Path(tmp)
        tarball = _npm_pack(spec, tmp)
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp / "x", filter="data")
        package = tmp / "x" / "package"
        if keep is None:
            wanted = {
                strip + name for name in _module_graph(package / strip, "mermaid.esm.min.mjs")
            }
            keep = wanted.__contains__
        staged = tmp / "staged"
        for path in package.rglob("*"):
            rel = path.relative_to(package).as_posix()
            if path.is_file() and keep(rel):
                target = staged / rel[len(strip) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        license_file = next(package.glob("LICEN[CS]E*"), None)
        if license_file is not None:
            shutil.copy2(license_file, staged / "LICENSE.txt")
        (staged / "VERSION.txt").write_text(spec + "\n")
        dest.parent.mkdir(parents=True, exist_ok=True)
        old = tmp / "old"
        if dest.exists():
            dest.rename(old)
        try:
            staged.rename(dest)
        except OSError:  # another build put it there first
            if not (dest / "VERSION.txt").exists():
                raise


def vendor_all(cache: Path) -> Path:
    """Fetch every package into ``cache`` (if not there yet); returns the static root."""
    static_root = cache / "static"
    static_root.mkdir(parents=True, exist_ok=True)
    for spec in PACKAGES:
        _vendor(spec, static_root)
    return static_root


def _on_config_inited(app: Sphinx, config: Config) -> None:
    if os.environ.get("ZEN_BOOK_CDN") == "1":
        logger.info("ZEN_BOOK_CDN=1: MathJax, mermaid and the widget scripts load from CDNs")
        for name, value in CDN.items():
            setattr(config, name, value)
        config.html_static_path = [*config.html_static_path, str(HERE / "static")]
        return
    cache = Path(os.environ.get("ZEN_VENDOR_DIR") or Path(app.srcdir) / "_build" / "vendor")
    static_root = vendor_all(cache.resolve())
    config.html_static_path = [*config.html_static_path, str(static_root), str(HERE / "static")]


def _dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Drop repeated copies of one script from a page.

    sphinx-thebe and sphinx-togglebutton add their inline configuration at every read phase
    (once with filename None, once with "", so Sphinx keeps both), and a second
    ``const THEBE_JS_URL = ...`` on a page is a SyntaxError in the console.
    """
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        # an inline script's filename is None or "" depending on how it was added
        key = (getattr(script, "filename", str(script)) or "", repr(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    # in place: this is the builder's list, to which later handlers (MathJax, mermaid) add
    scripts[:] = kept


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _on_config_inited, priority=100)
    # early: a handler that returns a template name ends the event (emit_firstresult)
    app.connect("html-page-context", _dedupe_scripts, priority=200)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
