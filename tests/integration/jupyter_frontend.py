"""Notebook 05 in a real Jupyter front end: a JupyterLab server on 127.0.0.1 (token, an isolated config), the
system's headless Chromium over the DevTools pipe (:class:`nasa_lens.browser.BrowserSession`, every other host
unresolvable), run all cells, click a cell of the NAS explorer's heatmap, read what the page shows.

Used by ``tests/integration/test_jupyter.py``; ``python tests/integration/jupyter_frontend.py OUT.png [MODEL DATA [LAYER.HEAD]]`` writes
the screenshot of docs/explore.md (default: tiny-random on arithmetic, as the test).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "05_explore.ipynb"
LOCAL = ("data:", "blob:", "about:", "chrome-error:", "devtools:")

# The running notebook panel of JupyterLab (exposed as window.jupyterapp by --LabApp.expose_app_in_browser).
_PANEL = "(window.jupyterapp && jupyterapp.shell.currentWidget && jupyterapp.shell.currentWidget.content)"

_CELLS_JS = f"""(() => {{
  const nb = {_PANEL}; if (!nb || !nb.widgets) return null;
  return JSON.stringify(nb.widgets.filter(c => c.model.type === 'code').map(c => ({{
    count: c.model.executionCount,
    errors: c.model.outputs.toJSON().filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
  }})));
}})()"""

_KERNEL_IDLE_JS = f"""(() => {{ const p = jupyterapp.shell.currentWidget;
  return !!(p && p.sessionContext && p.sessionContext.session && p.sessionContext.session.kernel
            && p.sessionContext.session.kernel.connectionStatus === 'connected' && !p.sessionContext.isBusy
            && p.sessionContext.session.kernel.status === 'idle'); }})()"""

# The explorer: the ipywidgets VBox holding a dropdown and a plotly heatmap (a FigureWidget drawn by anywidget).
_EXPLORER_JS = """(() => {
  const boxes = [...document.querySelectorAll('.widget-vbox')].filter(b =>
      b.querySelector(':scope > .widget-hbox .widget-dropdown') && b.querySelector('.js-plotly-plot'));
  if (!boxes.length) return null;
  const box = boxes[boxes.length - 1];
  const plots = [...box.querySelectorAll('.js-plotly-plot')];
  const heat = plots[0];
  const status = [...box.querySelectorAll(':scope > .widget-html')].map(e => e.textContent.trim()).join(' ');
  const fig = gd => ({title: ((gd.layout || {}).title || {}).text || '', type: ((gd._fullData || [])[0] || {}).type || '',
                      width: gd.getBoundingClientRect().width, height: gd.getBoundingClientRect().height,
                      svg: gd.querySelectorAll('.main-svg').length});
  return JSON.stringify({status, heatmap: fig(heat), details: plots.slice(1).map(fig),
                         nx: heat._fullData && heat._fullData[0].z ? heat._fullData[0].z[0].length : 0,
                         ny: heat._fullData && heat._fullData[0].z ? heat._fullData[0].z.length : 0});
})()"""

# Viewport point of the heatmap cell (layer, head): plotly's own axis transforms, after scrolling it into view.
_CELL_POINT_JS = """((layer, head) => {
  const boxes = [...document.querySelectorAll('.widget-vbox')].filter(b =>
      b.querySelector(':scope > .widget-hbox .widget-dropdown') && b.querySelector('.js-plotly-plot'));
  const gd = boxes[boxes.length - 1].querySelector('.js-plotly-plot');
  gd.scrollIntoView({block: 'center'});
  const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return JSON.stringify({x: r.left + xa._offset + xa.d2p(head), y: r.top + ya._offset + ya.d2p(layer)});
})"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_server(root: Path, env: dict[str, str], *, timeout: float = 120) -> Iterator[tuple[str, str]]:
    """A JupyterLab server serving ``root`` on 127.0.0.1 with a random token and its own config, data and
    runtime folders (no user settings, no news, no update check); yields ``(base URL, token)``."""
    home = Path(tempfile.mkdtemp(prefix="nasa-lens-jupyter-"))
    token = os.urandom(16).hex()
    port = free_port()
    config = home / "config"
    (config / "labconfig").mkdir(parents=True)
    # no announcements toast (it asks to fetch news from the internet); nothing else is disabled
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    server_env = {**os.environ, **env, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_DATA_DIR": str(home / "data"),
                  "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_PLATFORM_DIRS": "1",
                  "IPYTHONDIR": str(home / "ipython"),
                  # the server itself must not reach out either: any proxied request fails at once
                  "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.allow_root=True", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.extension_manager=readonly",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.user_settings_dir={home / 'settings'}", f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen(cmd, cwd=root, env=server_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Jupyter server did not start: {(home / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def run_explorer(work: Path, *, model: str = "tiny-random", data: str = "arithmetic", screenshot: Path | None = None,
                 width: int = 1280, height: int = 1000, timeout: float = 300, click: tuple[int, int] | None = None) -> dict[str, Any]:
    """Open notebook 05 in JupyterLab, run all cells, click a heatmap cell (``click``: (layer, head); default:
    the first head of the last layer the notebook has not selected); what was seen (see the keys)."""
    from nasa_lens.browser import BrowserSession

    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    env = {"NASA_LENS_NOTEBOOK_QUICK": "1", "NASA_LENS_NOTEBOOK_MODEL": model, "NASA_LENS_NOTEBOOK_DATA": data,
           "NASA_LENS_NOTEBOOK_OUT": str(work / "out"), "PYTHONPATH": os.pathsep.join(
               p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)}
    seen: dict[str, Any] = {"timings": {}}
    t0 = time.monotonic()
    with jupyter_server(work, env) as (base, token), BrowserSession(width=width, height=height, allow_hosts=("127.0.0.1",)) as tab:
        seen["base"] = base
        seen["timings"]["server"] = time.monotonic() - t0
        tab.navigate(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", timeout=timeout)
        tab.wait_for(f"!!({_PANEL} && {_PANEL}.widgets && {_PANEL}.widgets.length)", timeout, what="the notebook to open")
        tab.wait_for(_KERNEL_IDLE_JS, timeout, what="the kernel to start")
        seen["timings"]["open"] = time.monotonic() - t0
        tab.evaluate("jupyterapp.commands.execute('notebook:run-all-cells')")  # Run > Run All Cells

        def cells() -> list[dict[str, Any]]:
            return json.loads(tab.evaluate(_CELLS_JS) or "[]")

        deadline = time.monotonic() + timeout
        while True:
            state = cells()
            time.sleep(0.5)
            if state and (all(c["count"] for c in state) or any(c["errors"] for c in state)) and tab.evaluate(_KERNEL_IDLE_JS):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"cells not run within {timeout}s: {state}")
        seen["cells"] = cells()
        seen["timings"]["run"] = time.monotonic() - t0
        before = json.loads(tab.wait_for(_EXPLORER_JS, 60, what="the NAS explorer widget"))
        tab.wait_for(f"(() => {{ const s = JSON.parse({_EXPLORER_JS} || 'null'); return s && s.heatmap.svg > 0 && "
                     "s.details.length === 2 && s.details.every(d => d.svg > 0); })()", 60, what="the explorer to draw")
        seen["before"] = json.loads(tab.evaluate(_EXPLORER_JS))
        # click a head the notebook has not selected: the first cell of the last layer, or its neighbour
        layer = before["ny"] - 1
        head = 0 if f"head {layer}.0:" not in before["status"] else 1
        if click is not None:
            layer, head = click
        seen["clicked"] = f"{layer}.{head}"
        point = json.loads(tab.evaluate(f"({_CELL_POINT_JS})({layer}, {head})"))
        time.sleep(0.5)
        point = json.loads(tab.evaluate(f"({_CELL_POINT_JS})({layer}, {head})"))  # after the scroll settled
        tab.click(point["x"], point["y"])
        tab.wait_for(f"(() => {{ const s = JSON.parse({_EXPLORER_JS} || 'null'); return s && s.status.includes('head {layer}.{head}:') "
                     f"&& s.details.length === 2 && s.details.every(d => d.svg > 0 && d.title.includes('{layer}.{head}')); }})()",
                     90, what=f"the head card and attention of {layer}.{head} after the click")
        time.sleep(1.0)
        seen["after"] = json.loads(tab.evaluate(_EXPLORER_JS))
        seen["timings"]["click"] = time.monotonic() - t0
        png = tab.screenshot()
        seen["n_colors"] = tab.n_colors(png)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(png)
        seen["requests"] = tab.requests
        seen["websockets"] = [e["params"]["url"] for e in list(tab.pipe.events) if e.get("method") == "Network.webSocketCreated"]
        seen["console_errors"] = tab.console_errors
    seen["off_machine"] = [u for u in seen["requests"] + seen["websockets"]
                           if not (u.startswith(LOCAL) or u.startswith((base + "/", base.replace("http", "ws", 1) + "/")))]
    return seen


if __name__ == "__main__":  # pragma: no cover - writes the screenshot of docs/explore.md
    args = sys.argv[1:]
    out = Path(args[0]) if args else ROOT / "docs" / "img" / "jupyter_explorer.png"
    extra: dict[str, Any] = {"model": args[1], "data": args[2]} if len(args) >= 3 else {}
    if len(args) >= 4:  # LAYER.HEAD to click, and a taller page that shows the card below the heatmap
        extra.update(click=tuple(int(x) for x in args[3].split(".")), height=1700)
    result = run_explorer(Path(tempfile.mkdtemp(prefix="nasa-lens-05-")), screenshot=out, timeout=1200, **extra)
    print(json.dumps({k: v for k, v in result.items() if k not in ("requests",)}, indent=1, default=str))
