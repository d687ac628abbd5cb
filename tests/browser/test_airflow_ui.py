"""The Airflow UI in Debian's headless Chromium, against real components and the emulator.

Four steps, each a test with screenshots (the folder is printed at the start):

1. the form of a new ``odps_tunnel`` connection shows the fields, labels, descriptions and
   hidden standard fields the provider info declares;
2. a connection saved through the form, and its Test button. Airflow 3.3's UI sends
   ``port: 0`` for a connection without a port, which the API server takes for another
   destination than the stored one and answers 400, shown as "Bad Request": the test records
   that, and tests connections through the REST API instead (success against the emulator,
   the service's message for a wrong key);
3. the load example triggered from its form: its mapped writers carry readable names (the
   map index template) and a writer's log shows its progress lines;
4. the SQL task's LogView link leads to the emulator's LogView page of its instance.

Every test fails on console errors or uncaught exceptions in the page, responses >= 500,
and errors or tracebacks the Airflow components logged meanwhile (``server_logs.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, unquote

from playwright.sync_api import BrowserContext, Locator, Page, expect
from provider.data import SALES_COLUMNS, create_table, read_table, write_sales_files

from airflow_provider_odps_tunnel.get_provider_info import CONN_TYPE, get_provider_info

from .chromium import PageErrors, Screenshots
from .conftest import AirflowUi, emulator_connection
from .dags.browser_odps_sql import SQL

CONNECTION_TYPE = next(
    c for c in get_provider_info()["connection-types"] if c["connection-type"] == CONN_TYPE
)
STANDARD_FIELDS = ("host", "schema", "login", "password", "port")


def _check_clean(ui: AirflowUi, errors: PageErrors) -> None:
    errors.assert_none()
    ui.logs.assert_clean()


def _run_path(run_id: str) -> str:
    return quote(run_id, safe="")


def _open_new_connection_form(page: Page, ui: AirflowUi, conn_id: str) -> Locator:
    """The Add Connection dialog with ``conn_id`` and our connection type chosen; its
    standard fields are shown, the extra fields folded (see :func:`_show_extra_fields`)."""
    page.goto(f"{ui.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Connection ID").fill(conn_id)
    dialog.get_by_role("combobox").fill(CONNECTION_TYPE["hook-name"])
    page.get_by_role("option", name=CONNECTION_TYPE["hook-name"], exact=True).click()
    expect(dialog.locator("input[name=login]")).to_be_visible()
    return dialog


def _show_extra_fields(dialog: Locator) -> None:
    """Unfold the extra fields (which folds the standard ones)."""
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    expect(dialog.locator("input[name=element_project]")).to_be_visible()


def _field(dialog: Locator, input_name: str) -> Locator:
    """The form field (label, input, description) whose input is named ``input_name``."""
    return dialog.locator("[data-scope=field][data-part=root]").filter(
        has=dialog.page.locator(f'[name="{input_name}"]')
    )


def test_connection_form_shows_the_declared_fields(
    airflow_ui: AirflowUi, page: tuple[Page, PageErrors], screenshots: Screenshots
) -> None:
    tab, errors = page
    dialog = _open_new_connection_form(tab, airflow_ui, "odps_form_check")
    behaviour = CONNECTION_TYPE["ui-field-behaviour"]
    for name in behaviour["hidden-fields"]:
        expect(dialog.locator(f'input[name="{name}"]')).to_have_count(0)
    for name, label in behaviour["relabeling"].items():
        expect(_field(dialog, name).locator("[data-part=label]")).to_have_text(label)
    expect(dialog.locator("input[name=password]")).to_have_attribute("type", "password")
    for name, text in behaviour.get("placeholders", {}).items():
        if name in STANDARD_FIELDS:  # Airflow 3.3 applies placeholders to standard fields only
            expect(dialog.locator(f'input[name="{name}"]')).to_have_attribute("placeholder", text)
    screenshots.take(tab, "connection-form-standard-fields")

    _show_extra_fields(dialog)
    screenshots.take(tab, "connection-form-extra-fields")

    for name, spec in CONNECTION_TYPE["conn-fields"].items():
        field = _field(dialog, f"element_{name}")
        expect(field).to_have_count(1)
        expect(field.locator("[data-part=label]")).to_contain_text(spec["label"])
        expect(field).to_contain_text(spec["description"])
        types = spec["schema"]["type"]
        required = "null" not in (types if isinstance(types, list) else [types])
        label = field.locator("[data-part=label]").inner_text()
        assert ("*" in label) == required, (name, label)
        secret = spec["schema"].get("format") == "password"
        expect(field.locator("input")).to_have_js_property("type", "password" if secret else "text")

    _check_clean(airflow_ui, errors)


def test_saved_connection_and_its_test(
    airflow_ui: AirflowUi, page: tuple[Page, PageErrors], screenshots: Screenshots, emulator: Any
) -> None:
    tab, errors = page
    conn_id = "odps_ui_saved"
    dialog = _open_new_connection_form(tab, airflow_ui, conn_id)
    dialog.locator("input[name=login]").fill(emulator.access_id)
    dialog.locator("input[name=password]").fill(emulator.secret_access_key)
    _show_extra_fields(dialog)
    dialog.locator("input[name=element_project]").fill(emulator.project)
    dialog.locator("input[name=element_endpoint]").fill(emulator.endpoint)
    screenshots.take(tab, "connection-filled")
    # Airflow 3.3.2 tests connections from the list's rows only: no form has a Test button.
    expect(dialog.get_by_role("button", name="Test Connection")).to_have_count(0)
    dialog.get_by_role("button", name="Save").click()
    row = tab.get_by_role("row").filter(has_text=conn_id)
    expect(row).to_contain_text(CONN_TYPE)
    status, stored = airflow_ui.api("GET", f"/connections/{conn_id}")
    assert status == 200 and stored["login"] == emulator.access_id, stored
    assert stored["extra"] is not None and emulator.endpoint in stored["extra"], stored
    screenshots.take(tab, "connection-saved")
    row.get_by_role("button", name="Edit Connection").click()
    edit = tab.get_by_role("dialog")
    expect(edit.locator("input[name=login]")).to_have_value(emulator.access_id)
    expect(edit.get_by_role("button", name="Test Connection")).to_have_count(0)
    edit.get_by_role("button", name="Close").click()
    expect(edit).to_have_count(0)

    # The UI's Test: Airflow 3.3 sends port 0 for a connection without one, and the API
    # server refuses to test a "different destination" with the stored, masked secret.
    errors.expect(r"status of 400 \(Bad Request\)")
    with tab.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as answer:
        row.get_by_role("button", name="Test Connection").click()
    assert answer.value.request.post_data_json["port"] == 0
    assert answer.value.status == 400
    assert "host or port to test differs" in answer.value.json()["detail"]
    expect(tab.get_by_text("Bad Request")).to_be_visible()
    screenshots.take(tab, "connection-test-button")

    # What works: the REST API, with a connection in the body, or a saved one by its id.
    for body in (
        {"connection_id": "odps_rest_check", **_rest_connection(emulator)},
        {"connection_id": conn_id, "conn_type": CONN_TYPE},
        {"connection_id": "odps_tunnel_default", "conn_type": CONN_TYPE},  # from the env
    ):
        status, result = airflow_ui.api("POST", "/connections/test", body)
        assert (status, result["status"]) == (200, True), result
        assert emulator.project in result["message"]
    wrong = {"connection_id": "odps_rest_check", **_rest_connection(emulator, "not-the-key")}
    status, result = airflow_ui.api("POST", "/connections/test", wrong)
    assert (status, result["status"]) == (200, False), result
    assert "signature" in result["message"].lower(), result  # the service refused the key
    _check_clean(airflow_ui, errors)


def _rest_connection(emulator: Any, secret: str | None = None) -> dict[str, Any]:
    conn = emulator_connection(emulator, secret)
    return {**conn, "extra": json.dumps(conn["extra"])}


def test_load_example_names_its_writers_and_logs_progress(
    airflow_ui: AirflowUi,
    page: tuple[Page, PageErrors],
    screenshots: Screenshots,
    emulator: Any,
    tmp_path: Any,
) -> None:
    tab, errors = page
    dag_id = "example_odps_load"
    table = create_table(emulator, "browser_sales", SALES_COLUMNS, "ds string")
    rows = write_sales_files(tmp_path / "source", files=4, rows_per_file=500)

    tab.goto(f"{airflow_ui.url}/dags/{dag_id}")
    tab.get_by_role("button", name="Trigger").first.click()
    dialog = tab.get_by_role("dialog")
    dialog.locator("input[name=element_source]").fill((tmp_path / "source").as_uri())
    dialog.locator("input[name=element_table]").fill(table)
    dialog.locator("input[name=element_block_size]").fill("1")  # one block per file
    dialog.locator("input[name=element_max_writers]").fill("2")
    screenshots.take(tab, "load-trigger-form")
    dialog.get_by_role("button", name="Trigger").click()
    tab.wait_for_url(re.compile(r"/runs/[^/]+$"))
    run_id = unquote(tab.url.rsplit("/runs/", 1)[1])
    assert airflow_ui.wait_for_run(dag_id, run_id) == "success", airflow_ui.standalone.log_tail()
    assert read_table(emulator, table).num_rows == rows

    _, found = airflow_ui.api(
        "GET", f"/dags/{dag_id}/dagRuns/{_run_path(run_id)}/taskInstances?task_id=write_blocks"
    )
    writers = {ti["map_index"]: ti["rendered_map_index"] for ti in found["task_instances"]}
    assert sorted(writers) == [0, 1], writers
    for index, name in writers.items():  # the map index template names them
        assert name and name != str(index), writers

    tab.goto(f"{airflow_ui.url}/dags/{dag_id}/runs/{run_id}/tasks/write_blocks/mapped")
    for name in writers.values():
        expect(tab.get_by_role("cell", name=name, exact=True)).to_be_visible()
    screenshots.take(tab, "load-mapped-writers")

    tab.goto(f"{airflow_ui.url}/dags/{dag_id}/runs/{run_id}/tasks/write_blocks/mapped/0")
    expect(tab.get_by_text(writers[0]).first).to_be_visible()
    progress = tab.get_by_text(re.compile(rf"{table}.*: [\d,/]+.* rows, [\d.]+ MB"))
    expect(progress.first).to_be_visible()
    screenshots.take(tab, "load-writer-log")
    _check_clean(airflow_ui, errors)


def test_sql_task_links_to_its_logview_page(
    airflow_ui: AirflowUi,
    page: tuple[Page, PageErrors],
    screenshots: Screenshots,
    browser: BrowserContext,
) -> None:
    tab, errors = page
    dag_id = "browser_odps_sql"
    status, run = airflow_ui.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})
    assert status == 200, run
    run_id = run["dag_run_id"]
    assert airflow_ui.wait_for_run(dag_id, run_id) == "success", airflow_ui.standalone.log_tail()

    tab.goto(f"{airflow_ui.url}/dags/{dag_id}/runs/{run_id}/tasks/run_sql")
    link = tab.locator('a[href*="/logview"]')
    expect(link).to_have_count(1)
    screenshots.take(tab, "sql-task-links")
    with browser.expect_page() as opened:
        link.click()
    logview = opened.value
    logview_errors = PageErrors()
    logview_errors.expect(r"404 .*/favicon\.ico")  # the emulator serves no icon
    logview_errors.watch(logview)
    logview.wait_for_load_state()
    expect(logview.locator("h1")).to_contain_text("LogView")
    expect(logview.locator("pre.sql")).to_contain_text(SQL)
    expect(logview.locator('#instance [data-field="status"]')).to_have_text("Terminated")
    expect(logview.locator("#row-count")).to_have_text("1")
    screenshots.take(logview, "sql-logview-page")
    logview.close()
    logview_errors.assert_none()
    _check_clean(airflow_ui, errors)
