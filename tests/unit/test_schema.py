"""The public GraphQL contract is pinned: a change to it shows up in review as a diff of
schema.graphql (regenerate with: python -c "from lightning.api import build_schema;
print(build_schema().as_str())" > schema.graphql)."""

from pathlib import Path

from lightning.api import build_schema

PINNED = Path(__file__).parents[2] / "schema.graphql"


def test_printed_schema_matches_the_checked_in_contract() -> None:
    assert build_schema().as_str() + "\n" == PINNED.read_text()


def test_every_query_accepts_consistent_with() -> None:
    schema = build_schema()
    query = schema.get_type_by_name("Query")
    assert query is not None
    for field in query.fields:  # type: ignore[attr-defined]
        assert "consistent_with" in {a.python_name for a in field.arguments}, field.name


def test_the_workflow_documents_json_schema_is_pinned_too() -> None:
    """docs/workflow.schema.json is what exportWorkflow writes and importWorkflow reads
    (regenerate with: python -c "import json; from lightning.domain.workflows.document import
    json_schema; print(json.dumps(json_schema(), indent=2))" > docs/workflow.schema.json)."""
    import json

    from lightning.domain.workflows.document import json_schema

    pinned = Path(__file__).parents[2] / "docs" / "workflow.schema.json"
    assert json.loads(pinned.read_text()) == json_schema()
