"""The result-API parity app on celeriac (see ``result_api_app``)."""

import celeriac
from tests.interop.result_api_app import build

app = build(celeriac)
