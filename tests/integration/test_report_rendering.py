"""The HTML reports opened by a real headless Chromium: the drill report and `dcctl report`'s page
render (the screenshot is not blank: many colours, the charts' included) and make no request
(the pages name no http(s) resource, and Chromium behind a proxy on a closed port still draws them).

The lab test at the end does the same with the report of a real drill and a real switchover.
"""
from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from dcctl.drill.html import render_html
from dcctl.ops.journal import Journal
from dcctl.ops.report import build_report
from tests.cli.test_bad_input import local_config
from tests.cli.test_errors import run
from tests.integration.conftest import dcctl, local_lab  # noqa: F401
from tests.unit.report_journals import DAY, drill_steps, history, write_operation

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
EXTERNAL = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//|url\(|@import|<script|<link"""
                      r"""|<iframe|<object|<embed""", re.IGNORECASE)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 1400) -> Path:
    """Chromium renders `page`; every request it would make goes to a proxy on a closed port."""
    profile = out.parent / f"profile-{out.stem}"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
         f"--proxy-server=http://127.0.0.1:{closed_port()}", "--proxy-bypass-list=<-loopback>",
         f"--screenshot={out}", f"--window-size={width},{height}", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert out.is_file(), result.stderr[-2000:]
    return out


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, one bytes object per pixel) of an 8-bit RGB or RGBA PNG: enough to tell a
    drawn page from a blank one, without an image library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color_type, _c, _f, interlace = header
    assert depth == 8 and color_type in (2, 6) and interlace == 0, header
    channels = 3 if color_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        rows.append(previous := unfilter(line[0], bytearray(line[1:]), previous, channels))
    pixels = [bytes(row[x:x + 3]) for row in rows for x in range(0, stride, channels)]
    return width, height, pixels


def unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        upper_left = previous[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - upper_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else upper_left)) & 0xFF
    return line


def assert_drawn(png: Path, *colours: tuple[int, int, int]) -> None:
    """Not blank: many distinct colours (text anti-aliasing, charts); the charts' colours present."""
    _w, _h, pixels = png_pixels(png)
    distinct = set(pixels)
    assert len(distinct) > 200, f"{png}: only {len(distinct)} colours: a blank or unstyled page"
    white = sum(1 for p in pixels if p == b"\xff\xff\xff")
    assert white < 0.97 * len(pixels), f"{png}: {white} of {len(pixels)} pixels are white"
    for colour in colours:
        assert bytes(colour) in distinct, f"{png}: no pixel of colour {colour} (a chart is missing)"


def assert_self_contained(text: str) -> None:
    assert not EXTERNAL.search(text), EXTERNAL.search(text).group(0)
    assert not re.search(r"https?://", text)


BLUE_BAR = (0x54, 0xAE, 0xFF)  # a drill step's Gantt bar
RTO_DOT, RPO_MARK, WINDOW_BAR = (0x09, 0x69, 0xDA), (0xBC, 0x4C, 0x00), (0x8C, 0x95, 0x9F)


def test_the_drill_report_renders_with_its_gantt_chart_and_no_request(tmp_path):
    directory = write_operation(tmp_path / "state", "20261201T000000Z-drill-abcdef", "drill", time.time(),
                                drill_steps(1.4, 0.3), args={"mode": "non-disruptive"})
    report = build_report(Journal(directory / "journal.jsonl").entries())
    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    text = page.read_text()
    assert_self_contained(text)
    assert "<strong>Data loss:</strong>" in text and "61.4 MiB (64,425,242 bytes)" in text
    assert_drawn(screenshot(page, tmp_path / "drill.png"), BLUE_BAR)


def test_the_service_history_page_renders_its_chart_and_makes_no_request(tmp_path):
    config = local_config(tmp_path)
    history(tmp_path / "state", time.time())
    result = run("-c", str(config), "report", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    page = Path(result.stdout.strip())
    assert_self_contained(page.read_text())
    assert_drawn(screenshot(page, tmp_path / "history.png"), RTO_DOT, RPO_MARK, WINDOW_BAR)


def test_an_empty_history_still_renders_a_page(tmp_path):
    result = run("-c", str(local_config(tmp_path)), "report", "--since", "1d", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    page = Path(result.stdout.strip())
    assert "no operation recorded in this period" in page.read_text()
    _w, _h, pixels = png_pixels(screenshot(page, tmp_path / "empty.png", 1000, 700))
    assert len(set(pixels)) > 50


@pytest.mark.lab
def test_the_reports_of_a_real_drill_and_switchover_render(local_lab, tmp_path):  # noqa: F811
    config = str(local_lab.spec.config_path)
    drill = dcctl("--yes", "-o", "json", "drill", config=config)
    dcctl("--yes", "switchover", config=config)
    dcctl("--yes", "switchover", config=config)  # back, so the lab is as the other tests expect
    import json

    operation = json.loads(drill.stdout)["operation"]
    drill_page = local_lab.spec.state_dir / "operations" / operation / "report.html"
    assert_self_contained(drill_page.read_text())
    assert_drawn(screenshot(drill_page, tmp_path / "lab-drill.png"), BLUE_BAR)
    written = dcctl("report", "--since", "1d", "--out", str(tmp_path / "out"), config=config)
    page = Path(written.stdout.strip())
    text = page.read_text()
    assert operation in text and text.count("-switchover-") >= 2
    assert_self_contained(text)
    assert_drawn(screenshot(page, tmp_path / "lab-history.png"), RTO_DOT, WINDOW_BAR)
    history_lines = dcctl("history", config=config).stdout
    assert "Traceback" not in history_lines
