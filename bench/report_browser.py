"""Open a report.html in headless Chromium: check every plot decodes, and take a screenshot.

    python bench/report_browser.py RUN/report.html --screenshot docs/report-screenshot.png

Chromium is Debian's ``chromium`` (``apt-get install -y chromium``); tests/test_report.py skips without it.
The check loads a copy of the page with a few lines of script appended that count the images the
browser decoded (``naturalWidth > 0``) and put the count in the title, which ``--dump-dom`` returns.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = "apotflow-images " + ok + "/" + imgs.length + " tables " + document.querySelectorAll("table").length;
});</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout)


def check(html: Path) -> dict:
    """{"images": decoded, "of": in the page, "tables": n} as Chromium saw the page."""
    html = Path(html).resolve()
    with tempfile.TemporaryDirectory() as d:
        probe = Path(d) / "probe.html"
        probe.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
        r = _run(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()])
    m = re.search(r"<title>apotflow-images (\d+)/(\d+) tables (\d+)</title>", r.stdout)
    if m is None:
        raise RuntimeError(f"chromium did not render the page: {r.stderr.strip()[-500:]}")
    return {"images": int(m.group(1)), "of": int(m.group(2)), "tables": int(m.group(3))}


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 2400) -> Path:
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    r = _run([f"--window-size={width},{height}", f"--screenshot={png}", Path(html).resolve().as_uri()])
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot: {r.stderr.strip()[-500:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html")
    p.add_argument("--screenshot", help="PNG to write")
    p.add_argument("--height", type=int, default=2400)
    args = p.parse_args(argv)
    res = check(Path(args.html))
    if args.screenshot:
        res["screenshot"] = str(screenshot(Path(args.html), Path(args.screenshot), height=args.height))
    print(json.dumps(res))
    return 0 if res["images"] == res["of"] and res["of"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
