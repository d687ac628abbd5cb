"""Extra links of this provider's operators: the LogView page of a SQL instance.

Airflow computes an extra link on the worker when the task ends and stores the URL as an
XCom, so the web UI never imports this code. The operator pushes the instance's LogView
address under :data:`LOGVIEW_XCOM_KEY` as soon as the instance is known (it holds a read
token the service signed); the link returns it. Against the emulator the address opens the
emulator's own LogView page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

__all__ = ["OdpsLogViewLink", "LOGVIEW_XCOM_KEY", "INSTANCE_XCOM_KEY"]

#: XCom key of the SQL instance's LogView address.
LOGVIEW_XCOM_KEY = "logview_url"
#: XCom key of the SQL instance's id.
INSTANCE_XCOM_KEY = "instance_id"


class OdpsLogViewLink(BaseOperatorLink):
    """ "LogView": the LogView page of the task's SQL instance (empty before it has one)."""

    name = "LogView"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=LOGVIEW_XCOM_KEY) or ""
