"""Open the Airflow 3 trigger form of a DAG in headless Chromium, fill the inputs a user must
give, check the Trigger button, press it, and save screenshots (docs/airflow.md, "Checking the
trigger form in a browser").

    python tests/dags/airflow_ui_check.py --url http://127.0.0.1:8793 --dag cc100_pipeline \
        --set work_dir=/tmp/w --set input_glob=/data/x.warc.wet.gz --out /tmp/ui

Needs Chromium (Debian: apt-get install -y chromium) and the `websockets` package (an Airflow
dependency); talks to the browser over the DevTools protocol on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1800"]

# JS helpers run in the page: find a button by its text, set a React-controlled input by label
JS = r"""
window.cc100 = {
  button(text) {
    return [...document.querySelectorAll('button')].find(b => b.innerText.trim() === text);
  },
  field(name) {  // the input/textarea of a param (FlexibleForm ids contain the param name)
    return document.querySelector(`[id$="${name}"] , [name="${name}"], #element_${name}`);
  },
  set(name, value) {
    const el = this.field(name);
    if (!el) return 'missing ' + name;
    const proto = el.tagName === 'TEXTAREA' ? HTMLTextAreaElement : HTMLInputElement;
    Object.getOwnPropertyDescriptor(proto.prototype, 'value').set.call(el, value);
    el.dispatchEvent(new Event('input', {bubbles: true}));
    el.dispatchEvent(new Event('change', {bubbles: true}));
    el.dispatchEvent(new Event('blur', {bubbles: true}));
    return 'ok';
  },
};
"""

TRIGGER_STATE = ("[...document.querySelectorAll('button')].filter(b => b.innerText.trim() === "
                 "'Trigger').map(b => b.disabled)")  # [the page's, the form's]


class Page:
    def __init__(self, ws):
        self.ws, self.n = ws, 0

    async def call(self, method, **params):
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                                 returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await self.js(expression):
                return True
            await asyncio.sleep(0.5)
        return False

    async def screenshot(self, path: Path):
        data = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))
        print(f"screenshot {path}")


async def check(url: str, dag: str, values: dict, out: Path, port: int) -> int:
    version = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version"))
    async with websockets.connect(version["webSocketDebuggerUrl"], max_size=2**26) as browser:
        b = Page(browser)
        target = await b.call("Target.createTarget", url="about:blank")
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p["id"] == target["targetId"])
    async with websockets.connect(ws_url, max_size=2**26) as ws:
        page = Page(ws)
        await page.call("Page.enable")
        await page.call("Page.navigate", url=f"{url}/dags/{dag}")
        if not await page.wait_for("!!document.querySelector('button')", 90):
            print("the DAG page did not load")
            return 1
        await page.js(JS)
        if not await page.wait_for("(() => { " + JS + " return !!cc100.button('Trigger'); })()", 60):
            await page.screenshot(out / f"{dag}-0-page.png")
            print("no Trigger button on the DAG page")
            return 1
        await page.js("cc100.button('Trigger').click()")
        await asyncio.sleep(3)
        await page.screenshot(out / f"{dag}-1-form.png")
        print(f"Trigger buttons before filling (disabled?): {await page.js(TRIGGER_STATE)}")
        for name, value in values.items():
            print(f"set {name}: {await page.js(f'cc100.set({json.dumps(name)}, {json.dumps(value)})')}")
        await asyncio.sleep(2)
        await page.screenshot(out / f"{dag}-2-filled.png")
        buttons = await page.js(TRIGGER_STATE)
        print(f"Trigger buttons after filling (disabled?): {buttons}")
        if not buttons or buttons[-1]:
            return 1
        await page.js("[...document.querySelectorAll('button')].filter(b => b.innerText.trim() "
                      "=== 'Trigger').pop().click()")
        await asyncio.sleep(4)
        await page.screenshot(out / f"{dag}-3-triggered.png")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="tests/dags/airflow_ui_check.py")
    p.add_argument("--url", default="http://127.0.0.1:8793")
    p.add_argument("--dag", required=True)
    p.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--port", type=int, default=9333, help="DevTools port (127.0.0.1)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    values = dict(kv.split("=", 1) for kv in a.set)
    with tempfile.TemporaryDirectory() as profile:
        chrome = subprocess.Popen(["chromium", *FLAGS, f"--user-data-dir={profile}",
                                   f"--remote-debugging-port={a.port}",
                                   "--remote-debugging-address=127.0.0.1", "about:blank"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(60):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{a.port}/json/version")
                    break
                except OSError:
                    time.sleep(0.5)
            return asyncio.run(check(a.url.rstrip("/"), a.dag, values, a.out, a.port))
        finally:
            chrome.terminate()
            chrome.wait()


if __name__ == "__main__":
    raise SystemExit(main())
