"""The result-API parity app on celery (see ``result_api_app``)."""

import celery

from tests.interop.result_api_app import build

app = build(celery)
