"""The exported report in a real browser: headless Chromium opens ``index.html`` and every
no-code page with the network cut off, and each must load whole (no failed request, every image
decoded, no console error) with the claims table inside its box.

The report is built by ``xlr reproduce`` itself from two small notebooks that produce what the
study's pages hold: tqdm progress bars (widgets in a kernel), a caption gallery in Hindi,
Arabic, Chinese and Russian, an inline matplotlib figure, saved figures and a claims table with
long claims. Chromium is Debian's (``make test`` installs it with the Noto fonts through apt
where it can); without it, or without playwright, the browser test is skipped and says why.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import write_notebook

from xlr.analysis.tables import CLAIMS_COLUMNS
from xlr.export import external_fetches, page_css
from xlr.report import reproduce

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
VIEWPORT = {"width": 1280, "height": 900}

CAPTIONS = {
    "en": "two red circles",
    "hi": "दो लाल वृत्त",
    "ar": "دائرتان حمراوان",
    "zh": "两个红色的圆",
    "ru": "два красных круга",
}
GALLERY = """
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from IPython.display import HTML, display
from tqdm.auto import tqdm
from xlr.data.gallery import caption_gallery_html
from xlr.data.imagetext import ArrayImages, ImageTextSet

for _ in tqdm(range(3), desc="steps"):
    pass
texts = {CAPTIONS!r}
caps = pd.DataFrame({"image_id": [0] * 5, "lang": list(texts), "caption_idx": [0] * 5,
                     "caption": list(texts.values())})
pixels = np.random.default_rng(0).integers(0, 255, (1, 16, 16, 3), dtype=np.uint8)
images = ImageTextSet("t", ["a"], ArrayImages(pixels), caps)
display(HTML(caption_gallery_html(images, [0], list(texts))))
plt.plot([0, 1], [1, 0])
plt.show()
"""


def writer_source(out: Path) -> str:
    columns = list(CLAIMS_COLUMNS)
    claim = "Hybrid batches give better multilingual retrieval than mono batches " * 3
    return f"""
from pathlib import Path
import matplotlib.pyplot as plt
import pandas as pd
from xlr.analysis.figure_style import save_figure
from xlr.analysis.tables import markdown_table, save_table

out = Path({str(out)!r})
row = {{name: "0.123 [+0.001, +0.002]" for name in {columns!r}}}
row["claim"] = {claim!r}
row["verdict"] = "not run (multi-full missing)"
frame = pd.DataFrame([row] * 3)
save_table(frame, out, "claims", markdown_table(frame))
fig, ax = plt.subplots(figsize=(9, 4))
ax.bar(["en", "hi", "zh"], [0.5, 0.2, 0.3])
for name in ("per_language_t2i_r1", "an_unlisted_figure"):
    save_figure(fig, out / "figures", name, ["png", "svg"])
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report written by ``reproduce``: executed notebooks, their pages and the index."""
    root = tmp_path_factory.mktemp("browser")
    params = root / "smoke.yaml"
    params.write_text(
        f"run: {{name: smoke, reports_dir: {root / 'reports'}}}\n"
        "data: {train_langs: [en, hi, zh], heldout_langs: [ar, ru]}\n"
    )
    out = root / "reports" / "smoke"
    notebooks = [
        write_notebook(root / "01_gallery.ipynb", gallery_source()),
        write_notebook(root / "06_tables.ipynb", writer_source(out)),
    ]
    reproduce(params, notebooks=notebooks)
    return out


def gallery_source() -> str:
    return GALLERY.replace("{CAPTIONS!r}", repr(CAPTIONS))


def pages(out: Path) -> list[Path]:
    return [out / "index.html", *sorted(out.glob("*.nocode.html"))]


def test_pages_fetch_nothing_and_show_progress_as_text(report: Path) -> None:
    """No page loads a script, stylesheet or font from another host, and tqdm's widget bars
    are the text a terminal shows, not an empty widget placeholder."""
    for page in sorted(report.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        assert external_fetches(text) == [], page.name
        assert '<script src="http' not in text and "widget-view+json" not in text
    gallery = (report / "01_gallery.nocode.html").read_text(encoding="utf-8")
    assert "steps: 100%|██████████| 3/3" in gallery
    assert all(caption in gallery for caption in CAPTIONS.values())


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    pytest.skip(
        "no Chromium on PATH: `make test` installs Debian's chromium, fonts-noto-core and "
        "fonts-noto-cjk through apt-get as root; elsewhere install a Chromium to run this test"
    )


# Evaluated in each page: what did not load, and whether the claims table overflows its box.
PAGE_CHECKS = """() => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => i.src.slice(0, 80));
  const box = document.querySelector('.table-wrap[data-table="claims"]');
  const cells = box ? [...box.querySelectorAll('th, td')] : [];
  return {
    images: images.length,
    broken: broken,
    claimsBox: box ? [box.scrollWidth, box.clientWidth] : null,
    overflowingCells: cells.filter(c => c.scrollWidth > c.clientWidth + 1).length,
    pageWidth: [document.documentElement.scrollWidth, window.innerWidth],
  };
}"""


def test_pages_render_offline_in_chromium(report: Path) -> None:
    executable = chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (the dev extra) drives Chromium"
    )
    problems: list[str] = []
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable)
        page = browser.new_page(viewport=VIEWPORT)
        # the network is cut off: any request that is not for a local file fails loudly
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(("file:", "data:"))
                else route.abort()
            ),
        )
        page.on("requestfailed", lambda request: problems.append(f"request {request.url[:100]}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console {message.text[:200]}")
                if message.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda error: problems.append(f"page error {error}"))
        for path in pages(report):
            page.goto(path.as_uri(), wait_until="load")
            found = page.evaluate(PAGE_CHECKS)
            assert found["broken"] == [], f"{path.name}: images not decoded {found['broken']}"
            assert found["images"] > 0, f"{path.name}: no image at all"
            assert found["pageWidth"][0] <= found["pageWidth"][1], f"{path.name} scrolls sideways"
            if path.name == "index.html":
                width, room = found["claimsBox"]
                assert width <= room, f"the claims table ({width}px) overflows its box ({room}px)"
                assert found["overflowingCells"] == 0, "claims table text overflows its cells"
        fonts = caption_fonts(page, report / "01_gallery.nocode.html")
        browser.close()
    assert problems == []
    if not noto_installed():
        pytest.skip("pages checked; the Noto fonts (make browser) are missing, so which font "
                    "draws each script's caption was not")  # fmt: skip
    stack = page_css()  # every script's caption is drawn by a font the stack names
    for lang, families in fonts.items():
        assert families and all(f'"{family}"' in stack for family in families), (lang, families)


def noto_installed() -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    listed = subprocess.run([fc_list], capture_output=True, text=True).stdout
    return all(name in listed for name in ("Noto Sans Devanagari", "Noto Sans CJK"))


def caption_fonts(page, path: Path) -> dict[str, list[str]]:
    """The fonts Chromium drew each gallery caption with (DevTools' platform fonts)."""
    page.goto(path.as_uri(), wait_until="load")
    session = page.context.new_cdp_session(page)
    session.send("DOM.enable")
    session.send("CSS.enable")
    root = session.send("DOM.getDocument")["root"]["nodeId"]
    fonts = {}
    for lang, caption in CAPTIONS.items():
        page.evaluate(
            "([lang, text]) => { for (const td of document.querySelectorAll('td')) "
            "{ if (td.textContent === text) td.id = 'caption-' + lang; } }",
            [lang, caption],
        )
        node = session.send("DOM.querySelector", {"nodeId": root, "selector": f"#caption-{lang}"})
        used = session.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
        fonts[lang] = [font["familyName"] for font in used]
    return fonts
