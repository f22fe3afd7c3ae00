"""Open an HTML file in headless Chromium, offline, and report what happened (for tests and screenshots).

:func:`check_page` drives Chromium through the DevTools protocol over a pipe (``--remote-debugging-pipe``:
no port, no network), with every host name mapped to "not found" (``--host-resolver-rules``), and records:

* every request the page made (``Network.requestWillBeSent``): a page that works offline makes only
  ``file:``, ``data:`` and ``blob:`` requests;
* console errors and uncaught exceptions (``Runtime.consoleAPICalled``, ``Runtime.exceptionThrown``,
  ``Log.entryAdded``);
* the size of every plotly figure (``.js-plotly-plot``'s ``getBoundingClientRect``) once plotly has drawn them;
* a PNG screenshot and its number of distinct colours (counted by the page itself, in a canvas, so no
  image library is needed here).

Standard library only; the Chromium is :func:`nasa_lens.plots.find_browser`'s.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasa_lens.vocab import NasaLensError

__all__ = ["PageReport", "BrowserError", "BrowserSession", "check_page", "LOCAL_SCHEMES"]

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:", "devtools:")


class BrowserError(NasaLensError, RuntimeError):
    """No Chromium, or it could not open the page."""


@dataclass
class PageReport:
    """What :func:`check_page` saw.

    Attributes:
        url: the page.
        requests: every URL the page requested.
        console_errors: console errors, uncaught exceptions and error log entries (one line each).
        figures: per ``.js-plotly-plot`` element: ``{"id", "width", "height", "svg"}`` (svg: number of
            ``.main-svg`` layers drawn inside it).
        n_figures_expected: the number of plotly figure ``div``s in the page source (``plotly-graph-div``).
        screenshot: the PNG bytes of the viewport (None if not asked).
        n_colors: distinct colours in the screenshot.
        title: the page's title.
        script_result: the value of ``check_page(script=...)``.
        seconds: time to load and draw.
    """

    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    n_figures_expected: int = 0
    screenshot: bytes | None = None
    n_colors: int = 0
    title: str = ""
    seconds: float = 0.0
    script_result: Any = None

    @property
    def external_requests(self) -> list[str]:
        """Requests that would leave the machine (anything but ``file:``, ``data:``, ``blob:``...)."""
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]

    @property
    def empty_figures(self) -> list[dict[str, Any]]:
        return [f for f in self.figures if f["width"] <= 0 or f["height"] <= 0 or f["svg"] == 0]

    def problems(self, *, min_colors: int = 32) -> list[str]:
        """Everything wrong with the page, one line each (empty when it works)."""
        out = [f"network request: {u}" for u in self.external_requests]
        out += [f"console error: {e}" for e in self.console_errors]
        out += [f"figure {f['id']} not drawn ({f['width']:.0f} x {f['height']:.0f} px, {f['svg']} svg)" for f in self.empty_figures]
        if len(self.figures) < self.n_figures_expected:
            out.append(f"{len(self.figures)} figures drawn of {self.n_figures_expected} in the page")
        if self.screenshot is not None and self.n_colors < min_colors:
            out.append(f"screenshot looks blank: {self.n_colors} distinct colours")
        return out


class _Pipe:
    """The DevTools protocol over Chromium's fds 3 (commands in) and 4 (messages out), NUL-separated JSON."""

    def __init__(self, browser: str, args: list[str]) -> None:
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()

        def setup() -> None:  # in the child: the pipe ends become fds 3 and 4 (via fds >= 10: no clobbering)
            a, b = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([browser, *args], stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     pass_fds=(3, 4, to_child_r, from_child_w), preexec_fn=setup, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._buf = b""
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._from_child_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._replies[-1] = {}
                    self._cond.notify_all()
                return
            self._buf += chunk
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30) -> dict[str, Any]:
        with self._lock:
            self._next += 1
            mid = self._next
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                if -1 in self._replies:
                    raise BrowserError(f"Chromium exited while waiting for {method}: {self.stderr_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"Chromium did not answer {method} within {timeout}s")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if ev.get("method") == method:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or -1 in self._replies:
                    return None
                self._cond.wait(left)

    def stderr_tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        os.close(self._to_child_w)
        os.close(self._from_child_r)
        self.log.close()


_FIGURES_JS = """(() => {
  const figs = [...document.querySelectorAll('.js-plotly-plot')];
  return JSON.stringify(figs.map(el => { const r = el.getBoundingClientRect();
    return {id: el.id, width: r.width, height: r.height, svg: el.querySelectorAll('.main-svg').length,
            drawn: !!el._fullLayout}; }));
})()"""

_EXPECTED_JS = "document.querySelectorAll('.plotly-graph-div').length"

_COLORS_JS = """(async (url) => {
  const img = new Image(); img.src = url; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  const px = new Uint32Array(ctx.getImageData(0, 0, c.width, c.height).data.buffer);
  const seen = new Set(); for (let i = 0; i < px.length; i += 1) { seen.add(px[i]); if (seen.size > 100000) break; }
  return seen.size;
})"""


def _console_line(ev: dict[str, Any]) -> str | None:
    p = ev.get("params", {})
    m = ev.get("method")
    if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        return " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
    if m == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        return d.get("exception", {}).get("description") or d.get("text", "exception")
    if m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
        e = p["entry"]
        return f"{e.get('text')} ({e.get('url', '')})"
    return None


class BrowserSession:
    """One headless Chromium tab driven over the DevTools pipe, offline: every host name but ``allow_hosts``
    resolves to "not found". For pages that need more than :func:`check_page` (a Jupyter server on
    127.0.0.1: log in, wait for a kernel, click)::

        with BrowserSession(allow_hosts=("127.0.0.1",)) as tab:
            tab.navigate("http://127.0.0.1:8888/lab?token=...")
            tab.wait_for("!!document.querySelector('.jp-Notebook')", timeout=60)
            tab.click(400, 300)
            png = tab.screenshot()
        tab.requests, tab.console_errors   # everything the page asked for, every error it logged

    Raises:
        BrowserError: no Chromium, or it failed (the message has the last line of its stderr).
    """

    def __init__(self, browser: str | None = None, *, width: int = 1200, height: int = 900,
                 allow_hosts: tuple[str, ...] = ()) -> None:
        from nasa_lens.plots import find_browser

        self.browser = browser or find_browser()
        if self.browser is None:
            raise BrowserError("no Chromium found (tried $BROWSER_PATH, chromium, google-chrome...); install one, e.g. apt-get install chromium")
        self.width, self.height, self.allow_hosts = width, height, allow_hosts
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self.pipe: _Pipe | None = None
        self.session = ""

    def __enter__(self) -> BrowserSession:
        self._profile = tempfile.TemporaryDirectory(prefix="nasa-lens-chromium-")
        rules = "MAP * ~NOTFOUND" + "".join(f", EXCLUDE {h}" for h in self.allow_hosts)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
                f"--host-resolver-rules={rules}", "--no-proxy-server", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "about:blank"]
        self.pipe = _Pipe(self.browser, args)
        try:
            target = self.pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Network", "Runtime", "Log", "Page"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                             "deviceScaleFactor": 1, "mobile": False})
            self.pipe.events.clear()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        assert self.pipe is not None, "use the session in a with block"
        return self.pipe.send(method, params, session=self.session, timeout=timeout)

    def navigate(self, url: str, timeout: float = 90) -> None:
        """Open ``url`` and wait for its load event."""
        assert self.pipe is not None, "use the session in a with block"
        self.pipe.events[:] = [e for e in self.pipe.events if e.get("method") != "Page.loadEventFired"]
        self.send("Page.navigate", {"url": url})
        if self.pipe.wait_event("Page.loadEventFired", timeout) is None:
            raise BrowserError(f"{url} did not finish loading within {timeout}s")

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The JSON-able value of a JavaScript expression in the page."""
        assert self.pipe is not None, "use the session in a with block"
        return _evaluate(self.pipe, self.session, expression, await_promise=await_promise)

    def wait_for(self, expression: str, timeout: float, *, what: str | None = None, interval: float = 0.25) -> Any:
        """Evaluate ``expression`` until it is truthy; its value. Raises :class:`BrowserError` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression, await_promise=True)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"waited {timeout:.0f}s for {what or expression}")
            time.sleep(interval)

    def click(self, x: float, y: float) -> None:
        """A real left click at viewport point (x, y): mouse moved, pressed, released (what a person does)."""
        for kind, extra in (("mouseMoved", {}), ("mousePressed", {"button": "left", "buttons": 1, "clickCount": 1}),
                            ("mouseReleased", {"button": "left", "buttons": 0, "clickCount": 1})):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})
            time.sleep(0.05)

    def screenshot(self, *, full_page: bool = False, timeout: float = 90) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            h = self.evaluate("document.documentElement.scrollHeight")
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": int(h), "scale": 1}
        return base64.b64decode(self.send("Page.captureScreenshot", params, timeout=timeout)["data"])

    def n_colors(self, png: bytes) -> int:
        """Distinct colours of a PNG, counted by the page in a canvas."""
        data = base64.b64encode(png).decode()
        return int(self.evaluate(f"({_COLORS_JS})('data:image/png;base64,{data}')", await_promise=True))

    @property
    def requests(self) -> list[str]:
        """Every URL the page requested so far (the colour count's own data: URLs left out)."""
        assert self.pipe is not None
        return [ev["params"]["request"]["url"] for ev in list(self.pipe.events)
                if ev.get("method") == "Network.requestWillBeSent"
                and not ev["params"]["request"]["url"].startswith("data:image/png;base64,")]

    @property
    def console_errors(self) -> list[str]:
        assert self.pipe is not None
        return [line for ev in list(self.pipe.events) if (line := _console_line(ev)) is not None]


def check_page(
    path: str | os.PathLike[str],
    *,
    width: int = 1200,
    height: int = 900,
    screenshot: bool = True,
    full_page: bool = False,
    scroll_to: str | None = None,
    timeout: float = 90,
    browser: str | None = None,
    script: str | None = None,
) -> PageReport:
    """Open ``path`` from disk in headless Chromium (offline) and report requests, console errors, figure
    sizes and a screenshot (see the module docstring).

    Args:
        width, height: the viewport in CSS pixels (the screenshot's size, unless ``full_page``).
        scroll_to: a CSS selector to scroll into view before the screenshot.
        script: a JavaScript expression evaluated once the figures are drawn (before the screenshot); its
            JSON-able value is :attr:`PageReport.script_result` (a test's probe: click a header, read a table).
        timeout: seconds to wait for the page and for plotly to draw every figure.

    Raises:
        BrowserError: no Chromium found, or it failed to load the page.
    """
    page = Path(path).resolve()
    if not page.is_file():
        raise BrowserError(f"{page} not found")
    url = page.as_uri()
    t0 = time.perf_counter()
    with BrowserSession(browser, width=width, height=height) as tab:
        tab.navigate(url, timeout)
        report = PageReport(url=url)
        deadline = time.monotonic() + timeout
        figures: list[dict[str, Any]] = []
        expected = int(tab.evaluate(_EXPECTED_JS) or 0)
        while True:  # plotly draws asynchronously: wait until every figure div has its layout
            figures = json.loads(tab.evaluate(_FIGURES_JS))
            if len(figures) >= expected and all(f["drawn"] for f in figures) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        time.sleep(0.3)  # transitions
        figures = json.loads(tab.evaluate(_FIGURES_JS))
        report.figures = [{k: f[k] for k in ("id", "width", "height", "svg")} for f in figures]
        report.n_figures_expected = expected
        report.title = tab.evaluate("document.title") or ""
        if script is not None:
            report.script_result = tab.evaluate(script, await_promise=True)
        if screenshot:
            if scroll_to:
                tab.evaluate(f"document.querySelector({json.dumps(scroll_to)}).scrollIntoView()")
                time.sleep(0.2)
            report.screenshot = tab.screenshot(full_page=full_page, timeout=timeout)
            report.n_colors = tab.n_colors(report.screenshot)
        time.sleep(0.1)
        report.requests = tab.requests
        report.console_errors = tab.console_errors
        report.seconds = time.perf_counter() - t0
        return report


def _evaluate(pipe: _Pipe, session: str, expression: str, *, await_promise: bool = False) -> Any:
    res = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": await_promise},
                    session=session)
    if "exceptionDetails" in res:
        d = res["exceptionDetails"]
        raise BrowserError(f"page script failed: {d.get('exception', {}).get('description') or d.get('text')}")
    return res.get("result", {}).get("value")
