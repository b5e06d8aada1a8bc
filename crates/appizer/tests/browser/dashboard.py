"""The dashboard in Chromium, as a person uses it (run by tests/dashboard.rs).

Takes one JSON argument: the server's address, the admin's sign-in, the seeded events'
expected figures, Chromium's path and where to save screenshots. Exits non-zero, with
what differed, when anything a person would see is wrong.
"""

import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

CONFIG = json.loads(sys.argv[1])
BASE = CONFIG["base_url"]
PROJECT = CONFIG["project"]
SHOTS = CONFIG["screenshots"]
os.makedirs(SHOTS, exist_ok=True)
# Answers a person's actions are expected to get: the session probe before signing in,
# the wrong password, the viewer's forged key creation, the ended session.
EXPECTED_REFUSALS = {
    ("GET", "/api/v1/session", 401),
    ("POST", "/api/v1/session", 401),
    ("POST", f"/api/v1/projects/{PROJECT}/keys", 403),
}
problems = []


def watch(page, name):
    """Records console errors, page errors and unexpected answers of `page`."""

    def on_console(message):
        # A refused request is also logged by the browser; answers are checked below.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"{name}: console error: {message.text}")

    def on_response(response):
        path = urllib.parse.urlparse(response.url).path
        key = (response.request.method, path, response.status)
        if response.status >= 500 or (response.status >= 400 and key not in EXPECTED_REFUSALS):
            problems.append(f"{name}: {response.request.method} {path} answered {response.status}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"{name}: page error: {e}"))
    page.on("response", on_response)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def track(event, user):
    body = json.dumps({"writeKey": CONFIG["write_key"], "userId": user, "event": event}).encode()
    request = urllib.request.Request(
        f"{BASE}/v1/track", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200, answer.status


def sign_in(page, email, password):
    page.goto(BASE + "/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def table_rows(page, selector):
    return page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => [...r.children].map(c => c.textContent.trim()))",
    )


def check(condition, message):
    if not condition:
        problems.append(message)


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=CONFIG["chromium"],
        args=[
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ],
    )
    admin = browser.new_context(viewport={"width": 1400, "height": 900})
    page = admin.new_page()
    watch(page, "admin")

    # Sign-in: a wrong password is refused in the page, the right one opens the overview.
    sign_in(page, CONFIG["email"], "not the password")
    expect(page.get_by_role("alert")).to_contain_text("wrong email or password")
    shot(page, "sign-in-refused")
    page.get_by_label("Password").fill(CONFIG["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("article.tile")).to_have_count(4)
    expect(page.locator('article[data-insight="Top events"] table')).to_contain_text("signup")
    shot(page, "overview")

    # Trends: the table and the chart's data equal the seeded counts per day.
    spec = {"series": [{"event": "signup", "math": "total"}], "interval": "day",
            "date_range": {"from": "-7d"}}
    page.goto(f"{BASE}/projects/{PROJECT}/trends?q={urllib.parse.quote(json.dumps(spec))}")
    expect(page.locator("#trends-table tbody tr")).to_have_count(1)
    headers = page.eval_on_selector_all(
        "#trends-table thead th", "cells => cells.map(c => c.textContent.trim())"
    )
    row = table_rows(page, "#trends-table")[0]
    by_day = {day: int(value) for day, value in zip(headers[2:], row[2:])}
    expected = {d: n for d, n in CONFIG["signups_per_day"].items()}
    shown = {d: n for d, n in by_day.items() if n}
    check(shown == expected, f"trends table per day {shown} != {expected}")
    check(row[1] == str(sum(expected.values())), f"trends total {row[1]}")
    series = json.loads(page.locator(".chart").get_attribute("data-series"))
    chart = dict(zip(headers[2:], series[0]["values"]))
    check({d: int(v) for d, v in chart.items() if v} == expected, f"chart data {chart}")
    expect(page.locator(".chart canvas")).to_have_count(1)
    shot(page, "trends")

    # Broken down by plan: one row per plan with its total.
    spec["breakdown"] = {"key": "plan", "type": "event", "limit": 10}
    page.goto(f"{BASE}/projects/{PROJECT}/trends?q={urllib.parse.quote(json.dumps(spec))}")
    expect(page.locator("#trends-table tbody tr")).to_have_count(len(CONFIG["signups_per_plan"]))
    totals = {
        r.get_attribute("data-breakdown"): r.locator("td").first.text_content()
        for r in page.locator("#trends-table tbody tr").all()
    }
    check(
        totals == {k: str(v) for k, v in CONFIG["signups_per_plan"].items()},
        f"breakdown totals {totals}",
    )
    shot(page, "trends-breakdown")

    # The controls change the URL, so a link reproduces the view.
    page.get_by_label("Chart").select_option("bar")
    expect(page).to_have_url(re.compile(r"chart=bar"))

    # A value's persons: the cell of the first day with signups, opened from the
    # keyboard, lists one person per signup that day.
    del spec["breakdown"]
    page.goto(f"{BASE}/projects/{PROJECT}/trends?q={urllib.parse.quote(json.dumps(spec))}")
    first_day = min(expected)
    cell = page.get_by_role("button", name=f"Persons of signup on {first_day}")
    cell.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#point-persons tbody tr")).to_have_count(expected[first_day])
    listed = table_rows(page, "#point-persons")
    check(sorted(r[0] for r in listed) == sorted(CONFIG["signed_up"][first_day])
          and all(r[1] == "1" for r in listed), f"point persons {listed}")
    shot(page, "trends-point-persons")
    page.locator("#point-persons a").first.click()
    expect(page.locator("#person-events tbody tr")).not_to_have_count(0)

    # A formula over two series: signups per hundred visits.
    ratio = {"series": [{"event": "visit", "math": "total"}, {"event": "signup", "math": "total"}],
             "formula": "B / A * 100", "interval": "day", "date_range": {"from": "-7d"}}
    page.goto(f"{BASE}/projects/{PROJECT}/trends?q={urllib.parse.quote(json.dumps(ratio))}")
    expect(page.locator("#trends-table tbody tr")).to_have_count(1)
    row = table_rows(page, "#trends-table")[0]
    check(row[0] == "B / A * 100" and row[1] == "60", f"formula row {row}")
    check(page.get_by_label(re.compile("^Formula")).input_value() == "B / A * 100", "formula field")
    shot(page, "trends-formula")

    # Stickiness: every person visited on one day of the week.
    sticky = {"series": [{"event": "visit", "math": "total"}], "interval": "day",
              "date_range": {"from": "-7d"}}
    page.goto(f"{BASE}/projects/{PROJECT}/stickiness?q={urllib.parse.quote(json.dumps(sticky))}")
    expect(page.locator("#stickiness-table tbody tr")).not_to_have_count(0)
    rows = table_rows(page, "#stickiness-table")
    check(rows[0] == ["1 day", "10"] and all(r[1] == "0" for r in rows[1:]), f"stickiness {rows}")
    shot(page, "stickiness")

    # Lifecycle: each person is new on the day of their first visit.
    life = {"event": "visit", "interval": "day", "date_range": {"from": "-7d"}}
    page.goto(f"{BASE}/projects/{PROJECT}/lifecycle?q={urllib.parse.quote(json.dumps(life))}")
    expect(page.locator("#lifecycle-table tbody tr")).to_have_count(4)
    days = page.eval_on_selector_all(
        "#lifecycle-table thead th", "cells => cells.map(c => c.textContent.trim())"
    )[1:]
    new = dict(zip(days, page.locator('#lifecycle-table tr[data-status="new"] td').all_text_contents()))
    check({d: int(n) for d, n in new.items() if n != "0"} == CONFIG["visits_per_day"],
          f"lifecycle new {new}")
    expect(page.locator(".chart canvas")).to_have_count(1)
    shot(page, "lifecycle")

    # The events explorer: filtered by name, then by a property; a row opens with Enter.
    page.goto(f"{BASE}/projects/{PROJECT}/events?event=signup")
    expect(page.locator("#events-table tr.event-row")).to_have_count(6)
    page.get_by_label("Property").fill("plan")
    page.get_by_label("Property").press("Tab")
    page.get_by_label("equals").fill("pro")
    page.get_by_label("equals").press("Tab")
    expect(page.locator("#events-table tr.event-row")).to_have_count(CONFIG["signups_per_plan"]["pro"])
    expect(page).to_have_url(re.compile(r"property=plan.*value=pro"))
    page.locator("#events-table tr.event-row").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#events-table tr.event-detail pre")).to_contain_text('"plan": "pro"')
    shot(page, "events")

    # Funnel: counts and conversion of each step.
    funnel = {"steps": [{"event": "visit"}, {"event": "signup"}], "date_range": {"from": "-7d"},
              "persons_limit": 20}
    page.goto(f"{BASE}/projects/{PROJECT}/funnels?q={urllib.parse.quote(json.dumps(funnel))}")
    expect(page.locator("#funnel-table tbody tr")).to_have_count(2)
    steps = table_rows(page, "#funnel-table")
    visits, signups = CONFIG["funnel"]["visit"], CONFIG["funnel"]["signup"]
    check(steps[0][1] == str(visits), f"funnel step 1 {steps[0]}")
    check(steps[1][1] == str(signups), f"funnel step 2 {steps[1]}")
    check(steps[1][2] == f"{100 * signups / visits:.1f}%", f"funnel conversion {steps[1]}")
    check(steps[1][4].startswith(str(visits - signups)), f"funnel drop-off {steps[1]}")
    shot(page, "funnel")

    # Retention: one cohort per day with visits, its size the persons who visited then.
    retention = {"start_event": {"event": "visit"}, "return_event": {"event": "signup"},
                 "period": "day", "retention_type": "first_time", "date_range": {"from": "-7d"}}
    page.goto(f"{BASE}/projects/{PROJECT}/retention?q={urllib.parse.quote(json.dumps(retention))}")
    expect(page.locator("#retention-table tbody tr")).not_to_have_count(0)
    cohorts = {r[0]: int(r[1]) for r in table_rows(page, "#retention-table") if r[1] != "0"}
    check(cohorts == CONFIG["visits_per_day"], f"retention cohorts {cohorts}")
    shot(page, "retention")

    # The SQL console answers over the project's events.
    page.goto(f"{BASE}/projects/{PROJECT}/sql")
    page.get_by_label("Query over events and persons").fill(
        "SELECT count(*) AS n FROM events WHERE event = 'visit'"
    )
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#sql-result tbody td")).to_have_text(str(CONFIG["funnel"]["visit"]))
    shot(page, "sql")

    # Live events: one sent through /v1/track shows within 2 s; paused, the next waits.
    page.goto(f"{BASE}/projects/{PROJECT}/live")
    expect(page.locator("#live-status")).to_contain_text("live")
    sent = time.monotonic()
    track("live_check", "live-1")
    page.locator('tr.event-row[data-event="live_check"]').wait_for(timeout=2000)
    check(time.monotonic() - sent < 2.0, "the live event took 2 s or more")
    page.get_by_role("button", name="Pause").click()
    track("paused_check", "live-1")
    expect(page.locator("#live-status")).to_contain_text("1 waiting", timeout=3000)
    check(page.locator('tr.event-row[data-event="paused_check"]').count() == 0,
          "a paused view showed a new event")
    shot(page, "live-paused")
    page.get_by_role("button", name="Resume").click()
    page.locator('tr.event-row[data-event="paused_check"]').wait_for(timeout=2000)
    page.locator('tr.event-row[data-event="live_check"]').click()
    expect(page.locator("tr.event-detail")).to_be_visible()
    shot(page, "live")

    # Persons and a person's page.
    page.goto(f"{BASE}/projects/{PROJECT}/persons")
    expect(page.locator("#persons-table tbody tr")).not_to_have_count(0)
    shot(page, "persons")
    page.locator("#persons-table a", has_text="p0").click()
    expect(page.get_by_role("heading", name="p0")).to_be_visible()
    expect(page.locator("#person-events tbody tr")).to_have_count(2)
    shot(page, "person")

    # Settings: an admin creates a key and sees its secret once.
    page.goto(f"{BASE}/projects/{PROJECT}/settings")
    page.get_by_label("Key name").fill("Browser key")
    page.locator("#create-key").get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_contain_text("apz_sk_")
    expect(page.locator("#keys-table")).to_contain_text("Browser key")
    expect(page.locator("#providers-table code.vapid")).to_have_text(CONFIG["vapid_public_key"])
    shot(page, "settings")

    # A project made in the page: its write key shown once, then renamed.
    page.get_by_label("New project name").fill("Second project")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#new-project-key")).to_contain_text("apz_")
    page.get_by_role("link", name="Open the new project").click()
    expect(page.get_by_label("Project", exact=True)).to_contain_text("Second project")
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Project name", exact=True).fill("Renamed project")
    page.get_by_role("button", name="Save project").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    expect(page.get_by_label("Project", exact=True).locator("option")).to_contain_text(
        ["Renamed project"]
    )
    shot(page, "settings-projects")

    # A segment built in the page: its size counted as the condition is written.
    page.goto(f"{BASE}/projects/{PROJECT}/segments")
    page.get_by_role("button", name="Add an event condition").click()
    page.get_by_label("Condition 2 event").fill("signup")
    expect(page.locator("#segment-size")).to_have_text(str(CONFIG["funnel"]["signup"]))
    page.get_by_label("Persons matching").select_option("or")
    page.get_by_label("Condition 1 property").fill("no_such_property")
    page.get_by_label("Condition 1 operator").select_option("is_set")
    expect(page.locator("#segment-size")).to_have_text(str(CONFIG["funnel"]["signup"]))
    page.get_by_label("Segment name").fill("Signed up")
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator("#segments-table")).to_contain_text("Signed up")
    shot(page, "segments")

    # A campaign created in the page: previewed, saved, scheduled, sent to the
    # emulators (checked by the test after this script), its report shown.
    page.goto(f"{BASE}/projects/{PROJECT}/campaigns")
    page.get_by_label("Campaign name").fill("Welcome back")
    page.get_by_label("Variant 1 title").fill("Hello")
    page.get_by_label("Variant 1 body").fill("We missed you")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-persons")).to_have_text(str(CONFIG["funnel"]["visit"]))
    shot(page, "campaign-preview")
    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("#campaign-state")).to_have_text("draft")
    page.get_by_role("button", name="Schedule").click()
    deadline = time.monotonic() + 30
    while True:
        page.get_by_role("button", name="Refresh").click()
        sent = page.locator('#campaign-report tr[data-group="A"] td.sent')
        if sent.count() and sent.text_content() == str(CONFIG["funnel"]["visit"]):
            break
        if time.monotonic() > deadline:
            problems.append(f"the campaign's report shows {sent.all_text_contents()} sent")
            break
        time.sleep(0.5)
    shot(page, "campaign-report")

    # A viewer joins through the invitation, sees no key control, and the server
    # refuses the request the control would have sent.
    viewer = browser.new_context(viewport={"width": 1400, "height": 900})
    vpage = viewer.new_page()
    watch(vpage, "viewer")
    vpage.goto(BASE + CONFIG["invite_link"])
    vpage.get_by_label("Choose a password").fill("the viewer's password")
    vpage.get_by_role("button", name="Join").click()
    expect(vpage.get_by_role("heading", name="Overview")).to_be_visible()
    vpage.goto(f"{BASE}/projects/{PROJECT}/settings")
    expect(vpage.get_by_text("Keys are managed by admins.")).to_be_visible()
    check(vpage.locator("#create-key").count() == 0, "a viewer sees the key control")
    status = vpage.evaluate(
        """async (project) => {
            const session = await (await fetch('/api/v1/session')).json();
            const answer = await fetch(`/api/v1/projects/${project}/keys`, {
                method: 'POST',
                headers: {'content-type': 'application/json', 'x-csrf-token': session.csrf_token},
                body: JSON.stringify({name: 'forged', role: 'admin'}),
            });
            return answer.status;
        }""",
        PROJECT,
    )
    check(status == 403, f"the viewer's forged key creation answered {status}")
    shot(vpage, "viewer-settings")

    # A session ended from another browser is signed out there.
    other = browser.new_context()
    opage = other.new_page()
    watch(opage, "second browser")
    sign_in(opage, CONFIG["email"], CONFIG["password"])
    expect(opage.get_by_role("heading", name="Overview")).to_be_visible()
    page.goto(f"{BASE}/projects/{PROJECT}/settings")
    expect(page.locator("#sessions-table tbody tr")).to_have_count(2)
    page.locator("#sessions-table").get_by_role("button", name="End").click()
    expect(page.locator("#sessions-table tbody tr")).to_have_count(1)
    EXPECTED_REFUSALS.add(("GET", "/api/v1/projects", 401))
    opage.reload()
    expect(opage.get_by_role("button", name="Sign in")).to_be_visible()

    # Sign out.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot(page, "signed-out")
    browser.close()

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"dashboard checks passed; screenshots in {SHOTS}")
