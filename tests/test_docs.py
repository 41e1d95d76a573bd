"""The documentation cannot drift from the code: its Python blocks run, and the site builds.

* Every ```python block of README.md and of the pages under docs/ runs, page by page in one
  namespace, in a temporary directory. A block that draws with Graphviz says so in a comment
  ("needs Graphviz") and is skipped where the `dot` program is missing.
* `mkdocs build --strict` passes (any warning fails: a missing figure, a link to a page or an
  API entry that does not exist), and every page of the built site links only to pages,
  images and anchors that exist.
* Where Chromium is installed (Debian's `chromium` package), every built page is opened in
  headless Chromium and must render its article with every image loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def test_every_page_is_checked_and_some_have_code():
    assert len(PAGES) >= 10
    assert sum(bool(python_blocks(p)) for p in PAGES) >= 2


WITH_CODE = [p for p in PAGES if python_blocks(p)]


@pytest.mark.parametrize("page", WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(page)):
        if "class " in block and "(Function)" in block and "import" not in block:
            continue  # an excerpt of the source shown for reading (it is in tinyae itself)
        if "needs Graphviz" in block and shutil.which("dot") is None:
            continue
        code = compile(block, f"{page.name}: python block {i + 1}", "exec")
        exec(code, namespace)  # noqa: S102 - the page's own example
    capsys.readouterr()


def _mkdocs() -> list[str]:
    pytest.importorskip("mkdocs", reason="MkDocs is not installed: pip install -e '.[test]'")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[test]'")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed: pip install -e '.[test]'")
    return [sys.executable, "-m", "mkdocs"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        ref = a.get("href") if tag == "a" else a.get("src") if tag == "img" else None
        if ref:
            self.refs.append(ref)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    cmd = _mkdocs()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([*cmd, "build", "--strict", "-d", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_site_builds_strict_and_has_every_page(site):
    for page in (ROOT / "docs").rglob("*.md"):
        rel = page.relative_to(ROOT / "docs").with_suffix("")
        built = site / ("index.html" if rel.name == "index" else rel / "index.html")
        assert built.is_file(), f"{page} was not built"


def test_built_pages_link_only_to_what_exists(site):
    parsed: dict[Path, _Links] = {}
    for html in site.rglob("*.html"):
        if html.parent.name == "search" or html.name == "404.html":
            continue  # the search index; the 404 page links by absolute URL, for any depth
        p = _Links()
        p.feed(html.read_text())
        parsed[html] = p
    broken = []
    for html, p in parsed.items():
        for ref in p.refs:
            url = urlparse(ref)
            if url.scheme or ref.startswith(("//", "mailto:")):
                continue  # the theme's external links; the site itself is offline
            target = (html.parent / unquote(url.path)).resolve() if url.path else html
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{html.relative_to(site)} -> {ref}")
            elif url.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else set()
                if url.fragment not in ids:
                    broken.append(f"{html.relative_to(site)} -> {ref} (no such anchor)")
    assert not broken, "broken links in the built site:\n" + "\n".join(broken[:30])
    images = [r for p in parsed.values() for r in p.refs if r.endswith((".png", ".svg"))]
    assert len(images) >= 20  # the figures are there to be checked


_RENDER = """<html><body><pre id="result">pending</pre><script>
const pages = PAGES, out = [];
function next(i) {
  if (i >= pages.length) { document.getElementById("result").textContent = JSON.stringify(out); return; }
  const f = document.createElement("iframe");
  f.onload = () => setTimeout(() => {
    const d = f.contentDocument, imgs = Array.from(d.images);
    out.push({page: pages[i], article: !!d.querySelector("article"), images: imgs.length,
              broken: imgs.filter(im => !(im.complete && im.naturalWidth > 0)).map(im => im.src)});
    f.remove(); next(i + 1);
  }, 200);
  f.src = pages[i]; document.body.appendChild(f);
}
next(0);
</script></body></html>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip("Chromium is not installed (apt-get install chromium): the pages were not rendered")


def test_every_page_renders_with_its_figures_in_headless_chromium(site, tmp_path):
    exe = _chromium()
    # A page with a missing picture, to show that a broken image is caught.
    (site / "broken-control.html").write_text('<article><img src="no-such-figure.png"></article>')
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("index.html") if p.parent.name != "search")
    pages.append("broken-control.html")
    wrapper = site / "render-check.html"
    wrapper.write_text(_RENDER.replace("PAGES", json.dumps(pages)))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=60000", "--dump-dom"]
    done = subprocess.run([exe, *flags, wrapper.as_uri()], capture_output=True, text=True, timeout=240)
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1) != "pending", f"Chromium did not finish:\n{done.stderr[-2000:]}"
    results = {r["page"]: r for r in json.loads(found.group(1))}
    assert results.pop("broken-control.html")["broken"], "the control's missing image went unnoticed"
    assert len(results) == len(pages) - 1
    for page, r in results.items():
        assert r["article"], f"{page} rendered without its article"
        assert not r["broken"], f"{page}: images did not load: {r['broken']}"
    assert sum(r["images"] for r in results.values()) >= 20
