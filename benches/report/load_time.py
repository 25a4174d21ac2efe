#!/usr/bin/env python3
"""Issue 26's point 2: the size of a run's report.html and how long a real browser
takes to load it.

    python3 benches/report/load_time.py RUN_DIR/report.html [--runs 3] [--browser chromium]

Copies the page beside itself with a probe script before </body> that writes the
navigation timing's loadEventEnd (ms since navigation start) into the title, loads
it in headless Chromium (1280 x 900 window, --dump-dom) once per run, and prints one
JSON line: {"report", "bytes", "load_ms": [...], "browser"}.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys

PROBE = (
    "<script>window.addEventListener('load',()=>setTimeout(()=>{"
    "const n=performance.getEntriesByType('navigation')[0];"
    "document.title='load '+n.loadEventEnd.toFixed(1);},0));</script></body>"
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("report", type=pathlib.Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--browser", default="chromium")
    a = ap.parse_args()
    html = a.report.read_text()
    probe = a.report.with_name("report-load-probe.html")
    probe.write_text(html.replace("</body>", PROBE, 1))
    version = subprocess.run([a.browser, "--version"], capture_output=True, text=True).stdout.strip()
    times = []
    try:
        for _ in range(a.runs):
            out = subprocess.run(
                [a.browser, "--headless", "--no-sandbox", "--disable-gpu",
                 "--window-size=1280,900", "--dump-dom",
                 probe.resolve().as_uri()],
                capture_output=True, text=True, timeout=60,
            ).stdout
            m = re.search(r"<title>load ([0-9.]+)</title>", out)
            if not m:
                print(f"{a.report}: the probe did not run", file=sys.stderr)
                return 1
            times.append(float(m.group(1)))
    finally:
        probe.unlink(missing_ok=True)
    print(json.dumps({"report": str(a.report), "bytes": len(html.encode()), "load_ms": times,
                      "browser": version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
