"""Grammar fuzzing of Lightning's GraphQL API with hypothesis-graphql: ``scripts/fuzz.py`` is
the command, ``tests/e2e/test_fuzz.py`` the bounded run in the suite."""

from .campaign import ROLES, Campaign, Target, fetch_schema, fuzz, gql, prepare, summary
from .checks import FAILURE_KINDS, SERIOUS, Finding, inspect
from .operations import KINDS, Operation, operations
from .server import embedded_server

__all__ = [
    "FAILURE_KINDS",
    "KINDS",
    "ROLES",
    "SERIOUS",
    "Campaign",
    "Finding",
    "Operation",
    "Target",
    "embedded_server",
    "fetch_schema",
    "fuzz",
    "gql",
    "inspect",
    "operations",
    "prepare",
    "summary",
]
