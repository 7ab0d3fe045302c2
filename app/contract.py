"""The vocabulary the gateway shares with the compute side, taken from the IDL (RPC.constants).

Statuses, decimal and page limits are the contract's constants: the gateway validates input with
them before any hop, so they are read from the generated code rather than spelled again here, and a
status added to the IDL reaches the REST API's schema without a change in app/. The names below
are typed views of those constants (the generated code is untyped).
"""

from __future__ import annotations

import re
from enum import StrEnum

from RPC import constants

#: A task's status, one member per entry of the IDL's STATUSES, named and valued as there.
Status = StrEnum("Status", [(name, name) for name in constants.STATUSES])  # type: ignore[misc]  # members from the IDL: mypy cannot evaluate them

#: The statuses of a task that has ended: it never changes again.
FINAL_STATUSES: frozenset[str] = frozenset(constants.FINAL_STATUSES)
WAITING: str = constants.WAITING

#: Smallest `decimal` a start accepts.
MIN_DECIMAL: int = constants.MIN_DECIMAL
#: Largest MAX_DECIMAL any deployment may set.
MAX_SUPPORTED_DECIMAL: int = constants.MAX_SUPPORTED_DECIMAL
#: MAX_DECIMAL unless configured otherwise.
DEFAULT_MAX_DECIMAL: int = constants.DEFAULT_MAX_DECIMAL

#: Tasks on a page of the list unless `limit` says otherwise, and the most `limit` may ask for.
DEFAULT_PAGE: int = constants.DEFAULT_PAGE
MAX_PAGE: int = constants.MAX_PAGE

#: A task id as the Thrift server makes them: a canonical (lower-case, hyphenated) UUID. Checked
#: before any hop, so that a malformed id costs no call.
TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EXAMPLE_TASK_ID = "123e4567-e89b-12d3-a456-426614174000"
