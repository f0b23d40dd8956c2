"""Real-browser test of the "Try it" cells: JupyterLab in headless Chromium, sliders moved with the
keyboard.

`make ui-test` runs it. For every slider check below it:
- runs the notebook's setup cell and its try-it cell in a live kernel (a scratch notebook in a temp
  folder);
- asserts the first render shows exactly one plot and the read-out the helper computes at the
  defaults;
- moves one slider with the arrow keys and asserts the read-out changes to what the helper computes
  for the
  slider's new value, and that the plot is redrawn;
- asserts no output shows "Error displaying widget", a traceback or a warning (stderr) box. It uses
  127.0.0.1 and a free port, stops every process it started by process id, and deletes its temp
  folder. If Chromium cannot be found or installed, it fails and says why.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from helpers import align, course, decision, decoding, lora
from helpers.serve_client import free_port

TIMEOUT_S = 60


@dataclass
class Check:
    """One slider move: which notebook's try-it cell, which slider, how many key presses, what
    the read-out must be."""

    notebook: str
    slider: str
    key: str  # "ArrowRight" or "ArrowLeft"
    presses: int
    expect: Callable[[str], str]  # slider's shown value -> the read-out line the helper computes
    default_shown: str  # what the slider must show before it is touched


def _num(shown: str) -> float:
    return float(shown.replace(",", ""))


CHECKS = [
    Check(
        "01_decision_check",
        "$ prompted",
        "ArrowLeft",
        1,
        default_shown="0.005",
        expect=lambda v: decision.readout(
            decision.slider_costs(10_000, _num(v), 0.0003, 8_200, 0.20), 365
        ),
    ),
    Check(
        "01_decision_check",
        "$ build",
        "ArrowRight",
        3,
        default_shown="8200",
        expect=lambda v: decision.readout(
            decision.slider_costs(10_000, 0.003, 0.0003, int(_num(v)), 0.20), 365
        ),
    ),
    Check(
        "03_lora_math",
        "rank",
        "ArrowRight",
        1,
        default_shown="16",
        expect=lambda v: lora.readout_line(
            lora.readout("Llama-3.1-8B", int(_num(v)), 16, "all-linear", 2048)
        ),
    ),
    Check(
        "05_dpo_and_siblings",
        "beta",
        "ArrowRight",
        2,
        default_shown="0.10",
        expect=lambda v: align.dpo_loss_readout(_num(v)),
    ),
    Check(
        "06_decoding",
        "temperature",
        "ArrowLeft",
        4,
        default_shown="1.00",
        expect=lambda v: _decoding_readout(temperature=_num(v)),
    ),
    Check(
        "06_decoding",
        "min_p",
        "ArrowRight",
        5,
        default_shown="0.00",
        expect=lambda v: _decoding_readout(temperature=0.8, min_p=_num(v)),
    ),
]
# The read-out each notebook's try-it cell prints before any slider moves.
DEFAULT_READOUT = {
    "01_decision_check": lambda: decision.readout(
        decision.slider_costs(10_000, 0.005, 0.0003, 8_200, 0.20), 365
    ),
    "03_lora_math": lambda: lora.readout_line(
        lora.readout("Llama-3.1-8B", 16, 16, "all-linear", 2048)
    ),
    "05_dpo_and_siblings": lambda: align.dpo_loss_readout(0.1),
    "06_decoding": lambda: _decoding_readout(),
}
# Try-it cells that read what an executed notebook saved; CI (UI_TEST_REQUIRE_ALL=1) fails when it
# is missing.
NEEDS_A_RUN = {"06_decoding": lambda: decoding.load_slider_position()}


def _decoding_readout(temperature=1.0, top_p=1.0, min_p=0.0, repetition_penalty=1.0) -> str:
    """Notebook 06's slider read-out, from the newest saved slider position."""
    s = decoding.Sampler(
        temperature, top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty
    )
    return "\n".join(
        decoding.readout_line(name, decoding.position_readout(p["logits"], p["seen_ids"], s))
        for name, p in decoding.load_slider_position().items()
    )


class UIFailure(Exception):
    """A check failed; the message says which and what was seen."""


def ensure_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages if they are missing."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found
    if not shutil.which("apt-get"):
        raise UIFailure(
            "chromium/chromedriver are missing and there is no apt-get to install Debian's packages"
        )
    cmd = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise UIFailure(
                "chromium/chromedriver are missing and this user is not root and has "
                "no sudo to install them"
            )
        cmd = ["sudo", "-n", *cmd]
    print("installing chromium and chromium-driver from Debian's packages ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        upd = subprocess.run(
            [*cmd[:-5], "update", "-q"] if cmd[0] == "sudo" else ["apt-get", "update", "-q"],
            capture_output=True,
            text=True,
            env=env,
        )
        done = (
            subprocess.run(cmd, capture_output=True, text=True, env=env)
            if upd.returncode == 0
            else upd
        )
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if done.returncode != 0 or not all(found):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UIFailure(
            f"could not install chromium: {' '.join(cmd)} exited {done.returncode}: {tail[0]}"
        )
    return found


def runnable_checks() -> list[Check]:
    """CHECKS whose notebook has what it needs; a missing run is skipped locally, and fails under
    UI_TEST_REQUIRE_ALL."""
    ready = []
    for check in CHECKS:
        try:
            if check.notebook in NEEDS_A_RUN:
                NEEDS_A_RUN[check.notebook]()
            ready.append(check)
        except FileNotFoundError as e:
            if os.environ.get("UI_TEST_REQUIRE_ALL") == "1":
                raise UIFailure(f"{check.notebook}: {e}") from None
            print(f"SKIP {check.notebook} / {check.slider}: {e}", flush=True)
    return ready


def scratch_notebook(folder: Path, checks: list[Check]) -> tuple[Path, dict[str, int]]:
    """A notebook of each checked notebook's setup, parameters, definition and try-it cells;
    returns it and the try-it indices."""
    cells, where = [], {}
    for stem in dict.fromkeys(c.notebook for c in checks):
        nb = nbformat.read(course.repo_root() / "notebooks" / f"{stem}.ipynb", as_version=4)
        tagged = lambda t: [c for c in nb.cells if t in c.metadata.get("tags", [])]  # noqa: E731
        setup, params, try_it = tagged("setup"), tagged("parameters"), tagged("try-it")
        if len(setup) != 1 or len(params) != 1 or len(try_it) != 1:
            raise UIFailure(
                f"{stem}: expected one cell tagged 'setup', one 'parameters' and one "
                "'try-it', "
                f"found {len(setup)}, {len(params)} and {len(try_it)}"
            )
        cells.append(nbformat.v4.new_code_cell(setup[0].source))
        cells.append(nbformat.v4.new_code_cell(params[0].source))
        # the notebook's own definitions a try-it cell may call (notebook 06's Sampler), in notebook
        # order
        cells += [
            nbformat.v4.new_code_cell(c.source)
            for c in nb.cells
            if set(c.metadata.get("tags", [])) & set(course.DEFINITION_TAGS)
        ]
        where[stem] = len(cells)
        cells.append(nbformat.v4.new_code_cell(try_it[0].source))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "ui_check.ipynb"
    nbformat.write(nb, path)
    return path, where


def start_lab(folder: Path, port: int, token: str) -> subprocess.Popen:
    """JupyterLab on 127.0.0.1:port, serving `folder`, with its runtime files and IPython profile
    inside it."""
    # Render every cell: JupyterLab's default windowing leaves cells far above the viewport out of
    # the page, so after "run all" the first try-it cell had no DOM to read once the scratch
    # notebook grew past one screen.
    settings = folder / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "IPYTHONDIR": str(folder / "ipython"),
        "JUPYTER_CONFIG_DIR": str(folder / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(folder / "settings"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    env.pop(course.HEADLESS_ENV, None)  # the kernel must be live, not headless
    cmd = [
        str(Path(sys.executable).parent / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={folder}",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.workspaces_dir={folder / 'workspaces'}",
        "--ServerApp.port_retries=0",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(folder / "lab.log", "w")
    proc = subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise UIFailure(
                f"jupyter lab exited with {proc.returncode}: "
                f"{(folder / 'lab.log').read_text()[-500:]}"
            )
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    raise UIFailure(f"jupyter lab did not answer on port {port} within {TIMEOUT_S} s")


def start_browser(chromium: str, chromedriver: str, folder: Path):
    """Headless Chromium driven by selenium through Debian's chromedriver (no driver download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,3000",
        f"--user-data-dir={folder / 'chrome'}",
        "--no-first-run",
        "--disable-gpu",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(
        service=Service(chromedriver, log_output=subprocess.DEVNULL), options=opts
    )


def poll(fn: Callable[[], object], what: str, timeout: float = TIMEOUT_S):
    """Call fn until it returns something truthy; return that, or fail naming `what`."""
    deadline, value = time.time() + timeout, None
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.3)
    raise UIFailure(f"timed out after {timeout:.0f} s waiting for {what} (last value: {value!r})")


def wait_for(driver, script: str, what: str, timeout: float = TIMEOUT_S):
    """Poll a JavaScript expression until it is truthy; return its value or fail naming `what`."""
    return poll(lambda: driver.execute_script(script), what, timeout)


READOUT_JS = """
const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[arguments[0]];
const out = cell && cell.querySelector('.widget-interact .widget-output');
if (!out) return null;
const texts = [...out.querySelectorAll('.jp-RenderedText pre')]
  .map(p => p.innerText.trim()).filter(t => t);
const imgs = [...out.querySelectorAll('img')];
const first = imgs.length ? imgs[0] : null;
return {text: texts.join('\\n'), images: imgs.length, src: first ? first.src.slice(-200) : '',
        width: first ? first.clientWidth : 0, natural: first ? first.naturalWidth : 0,
        all_images: cell.querySelectorAll('.jp-OutputArea img').length};
"""
SLIDER_JS = """
const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[arguments[0]];
for (const s of cell.querySelectorAll('.widget-slider')) {
  const label = s.querySelector('.widget-label');
  if (label && label.innerText.trim() === arguments[1]) {
    return {handle: s.querySelector('.noUi-handle'),
            shown: s.querySelector('.widget-readout').innerText.trim()};
  }
}
return null;
"""
PROBLEMS_JS = """
const bad = [];
for (const o of document.querySelectorAll('.jp-OutputArea-output')) {
  const t = o.innerText || '';
  const mime = o.getAttribute('data-mime-type');
  if (mime === 'application/vnd.jupyter.stderr') bad.push('stderr box: ' + t.slice(0, 200));
  if (t.includes('Error displaying widget')) bad.push('Error displaying widget');
  if (t.includes('Traceback')) bad.push('traceback: ' + t.slice(0, 200));
}
return bad;
"""


def run_all(driver, base: str, token: str, n_cells: int) -> None:
    """Open the scratch notebook, run every cell, and wait until each has finished."""
    driver.get(f"{base}/lab/tree/ui_check.ipynb?token={token}")
    wait_for(
        driver,
        "return window.jupyterapp && document.querySelectorAll('.jp-Notebook .jp-CodeCell').length",
        "the notebook to open",
    )
    panel = (
        "const w = [...window.jupyterapp.shell.widgets('main')].find(x => x.sessionContext && "
        "x.content);"
        "const k = w && w.sessionContext.session && w.sessionContext.session.kernel;"
    )
    wait_for(driver, panel + "return k && k.status === 'idle';", "an idle kernel")
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    wait_for(
        driver,
        panel + "return k.status === 'idle' && w.content.widgets.every("
        "c => c.model.type !== 'code' || c.model.executionCount);",
        f"all {n_cells} cells to run",
        timeout=120,
    )


def check_slider(driver, cell: int, check: Check) -> str:
    """Move one slider with the keyboard; assert the read-out and the plot follow. Returns a
    one-line report."""
    from selenium.webdriver.common.keys import Keys

    before = driver.execute_script(READOUT_JS, cell)
    slider = driver.execute_script(SLIDER_JS, cell, check.slider)
    if not slider:
        raise UIFailure(f"{check.notebook}: no slider labelled {check.slider!r} in the try-it cell")
    driver.execute_script("arguments[0].focus();", slider["handle"])
    key = {"ArrowRight": Keys.ARROW_RIGHT, "ArrowLeft": Keys.ARROW_LEFT}[check.key]
    for _ in range(check.presses):
        slider["handle"].send_keys(key)
    shown = poll(
        lambda: (
            (driver.execute_script(SLIDER_JS, cell, check.slider) or {}).get("shown")
            != slider["shown"]
            and driver.execute_script(SLIDER_JS, cell, check.slider)["shown"]
        ),
        f"the {check.slider!r} slider to move",
        10,
    )
    want = check.expect(shown)
    after = poll(
        lambda: (lambda r: r if r and r["text"] == want and r["images"] else None)(
            driver.execute_script(READOUT_JS, cell)
        ),
        f"{check.notebook}'s read-out to become {want!r} after {check.slider} = {shown} "
        f"(it shows {driver.execute_script(READOUT_JS, cell)['text']!r})",
        15,
    )
    time.sleep(0.5)  # let the output area settle, then count plots
    after = driver.execute_script(READOUT_JS, cell)
    if after["images"] != 1:
        raise UIFailure(f"{check.notebook}: {after['images']} plots after the move, expected 1")
    if after["src"] == before["src"]:
        raise UIFailure(
            f"{check.notebook}: the plot did not redraw after {check.slider} moved to {shown}"
        )
    return (
        f"{check.notebook}: {check.slider} {slider['shown']} -> {shown}: "
        f"read-out and plot redrawn ({want})"
    )


def main() -> int:
    """Run every check; print one line per check and a verdict; exit non-zero on any failure."""
    started = time.time()
    folder = Path(tempfile.mkdtemp(prefix="workbook-ui-"))
    lab = driver = None
    try:
        chromium, chromedriver = ensure_browser()
        checks = runnable_checks()
        nb_path, where = scratch_notebook(folder, checks)
        port, token = free_port(), secrets.token_hex(16)
        lab = start_lab(folder, port, token)
        driver = start_browser(chromium, chromedriver, folder)
        run_all(
            driver,
            f"http://127.0.0.1:{port}",
            token,
            len(nbformat.read(nb_path, as_version=4).cells),
        )
        for stem, cell in where.items():
            first = poll(
                lambda: (lambda r: r if r and r["text"] else None)(
                    driver.execute_script(READOUT_JS, cell)
                ),
                f"{stem}'s first live render",
                30,
            )
            if first["text"] != DEFAULT_READOUT[stem]():
                raise UIFailure(
                    f"{stem}: first live read-out {first['text']!r} != static "
                    f"{DEFAULT_READOUT[stem]()!r}"
                )
            if first["all_images"] != 1:
                raise UIFailure(
                    f"{stem}: the try-it cell shows {first['all_images']} plots, expected exactly 1"
                )
            if first["width"] < 0.95 * first["natural"]:
                raise UIFailure(
                    f"{stem}: the live plot is squeezed to {first['width']} of "
                    f"{first['natural']} px"
                )
            print(
                f"ok  {stem}: one plot ({first['width']} px), first live read-out equals the "
                "static one",
                flush=True,
            )
        for check in checks:
            slider = driver.execute_script(SLIDER_JS, where[check.notebook], check.slider)
            if slider and slider["shown"] != check.default_shown:
                raise UIFailure(
                    f"{check.notebook}: {check.slider!r} shows {slider['shown']} "
                    "before it is touched, "
                    f"not its default {check.default_shown}"
                )
        for check in checks:
            print("ok  " + check_slider(driver, where[check.notebook], check), flush=True)
        problems = driver.execute_script(PROBLEMS_JS)
        if problems:
            raise UIFailure("outputs show: " + "; ".join(problems))
        if os.environ.get("UI_TEST_SCREENSHOT"):
            driver.save_screenshot(os.environ["UI_TEST_SCREENSHOT"])
        print(
            f"UI TEST PASSED: {len(checks)} slider moves in {time.time() - started:.0f} s",
            flush=True,
        )
        return 0
    except UIFailure as e:
        print(f"UI TEST FAILED: {e}", flush=True)
        # a PNG path to look at when debugging a failure
        shot = os.environ.get("UI_TEST_SCREENSHOT")
        if shot and driver is not None:
            driver.save_screenshot(shot)
        return 1
    finally:
        stop(driver, lab, folder)


def _pids_mentioning(text: str) -> list[int]:
    """Process ids whose command line mentions `text` (our temp folder), other than this process."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"
                ):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def stop(driver, lab: subprocess.Popen | None, folder: Path) -> None:
    """Quit the browser and JupyterLab, then kill by pid anything still running from our temp
    folder; delete it."""
    if driver is not None:
        try:
            driver.quit()
        # noqa: BLE001 - the browser may already be gone; the pid sweep below still runs
        except Exception:
            pass
    if lab is not None and lab.poll() is None:
        lab.send_signal(signal.SIGTERM)
        try:
            lab.wait(15)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait(5)
    # kernels and browser helpers carry the folder in their arguments
    for pid in _pids_mentioning(str(folder)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists() or _pids_mentioning(str(folder)):
        print(f"UI TEST WARNING: could not clean up everything under {folder}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
