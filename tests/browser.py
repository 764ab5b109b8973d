"""Checks of HTML pages in headless Chromium, shared by the report's and the notebook's tests.

``chromium`` (the browser's path) is a fixture of ``conftest.py``: the tests that need it skip
where Chromium is not installed (``scripts/install-chromium`` installs it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

BROWSER_TIMEOUT = 60  # seconds for one Chromium run
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Added before </body>: once the page has loaded, <html data-images="loaded/total"> counts its images.
IMAGE_COUNTER = """<script>
addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.documentElement.dataset.images = loaded + "/" + images.length;
});
</script>
</body>"""


def run_chromium(chromium, tmp_path: Path, *args) -> str:
    """Run headless Chromium once; its stdout. Messages on stderr (dbus and the like) are ignored."""
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert done.returncode == 0, f"chromium exited with {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def counted_dom(chromium, tmp_path: Path, text: str) -> str:
    """The DOM of the page ``text`` once loaded, with IMAGE_COUNTER's count on its <html> element."""
    assert text.count("</body>") == 1
    copy = tmp_path / "counted.html"
    copy.write_text(text.replace("</body>", IMAGE_COUNTER), encoding="utf-8")
    return run_chromium(chromium, tmp_path, "--dump-dom", "--virtual-time-budget=5000", copy.as_uri())


def screenshot_gray(chromium, tmp_path: Path, uri: str, size=(1280, 2000)) -> np.ndarray:
    """The page's first ``size`` pixels as Chromium draws them, in gray levels 0-255."""
    shot = tmp_path / "page.png"
    run_chromium(chromium, tmp_path, f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", uri)
    with Image.open(shot) as im:
        assert im.size == size
        return np.asarray(im.convert("L"), dtype=float)
