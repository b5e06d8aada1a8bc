"""The trends screen in Chromium, timed (run by `appizer-bench dashboard`).

Takes one JSON argument: the server's address, the admin's sign-in, Chromium's path,
the number of timed runs and the pages ([name, path] pairs). For each page, one
untimed load and then `runs` timed ones, each from the navigation's start until the
numbers table and the chart are drawn; on the first page, also the breakdown typed
into its field until the table shows the plans. Prints one line per page.
"""

import json
import statistics
import sys

from playwright.sync_api import sync_playwright

CONFIG = json.loads(sys.argv[1])
BASE = CONFIG["base_url"]


def summary(values):
    return f"p50 {statistics.median(values):.0f} ms, max {max(values):.0f} ms"


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=CONFIG["chromium"],
        args=["--no-sandbox", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-gpu", "--disable-dev-shm-usage"],
    )
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    signed = context.request.post(
        f"{BASE}/api/v1/session",
        data={"email": CONFIG["email"], "password": CONFIG["password"]},
        headers={"origin": BASE},
    )
    assert signed.ok, signed.text()
    page = context.new_page()
    for index, (name, path) in enumerate(CONFIG["pages"]):
        loads, changes = [], []
        for run in range(CONFIG["runs"] + 1):
            page.goto(BASE + path)
            page.locator("#trends-table tbody tr").first.wait_for(timeout=30000)
            page.locator(".chart canvas").wait_for(timeout=30000)
            drawn = page.evaluate("performance.now()")
            if run:
                loads.append(drawn)
            if index == 0:
                before = page.evaluate("performance.now()")
                field = page.get_by_label("Breakdown by property")
                field.fill("plan")
                field.press("Tab")
                page.locator('#trends-table tbody tr[data-breakdown="pro"]').wait_for(timeout=30000)
                after = page.evaluate("performance.now()")
                if run:
                    changes.append(after - before)
        line = f"chromium {name:>10}: trends screen drawn {summary(loads)}"
        if changes:
            line += f"; breakdown typed to table {summary(changes)}"
        print(line, flush=True)
    browser.close()
