"""Schemathesis over the whole API as an anonymous caller, a CMO QA approver and a sponsor
auditor: no answer is a 5xx, and every answer's status code, content type and body are the
ones the OpenAPI schema documents. `FUZZ_MAX_EXAMPLES` sets the examples per operation and
actor: a few, reproducibly, in `make test`; many, freshly drawn, in `make fuzz`."""

import json
import os
import re
from functools import cache

import pytest
import schemathesis
from django.core.cache import cache as django_cache
from django.db import transaction
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import ACTORS, ANONYMOUS

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "3"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
HYPOTHESIS = hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize="FUZZ_MAX_EXAMPLES" not in os.environ,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
PATH_PARAMETER = re.compile(r"{(\w+)}")


@cache
def api_schema():
    """The schema `/api/schema/` serves, generated in-process."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    raw = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
    return schemathesis.openapi.from_dict(raw)


OPERATIONS = [result.ok() for result in api_schema().get_all_operations()]


def _strategy(operation, path_keys):
    """Generated cases, valid and invalid; on detail routes also cases naming real records
    (of both sponsors), so that the fuzz reaches past the 404."""
    generated = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    collection = operation.path.split("/")[3]
    known = {
        name: st.sampled_from(values)
        for name in PATH_PARAMETER.findall(operation.path)
        if (values := path_keys.get((collection, name)))
    }
    if not known:
        return generated
    real = st.fixed_dictionaries(known).flatmap(
        lambda parameters: operation.as_strategy(path_parameters=parameters)
    )
    return st.one_of(real, generated)


@pytest.mark.django_db
@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_api_answers_as_its_schema_documents(
    operation, actor, fuzz_world, in_process_application, settings
):
    settings.ALLOWED_HOSTS = ["localhost"]
    app = in_process_application
    headers = {} if actor == ANONYMOUS else {"Authorization": f"Token {fuzz_world.tokens[actor]}"}

    @given(case=_strategy(operation, fuzz_world.path_keys))
    @HYPOTHESIS
    def answers_as_documented(case):
        django_cache.clear()
        app.exceptions.clear()
        with transaction.atomic():
            response = case.call(app=app, headers=headers)
            transaction.set_rollback(True)
        assert response.status_code < 500, (
            f"{case.as_curl_command(headers=headers)}\n{''.join(app.exceptions)}"
        )
        case.validate_response(
            response, checks=CHECKS, headers=headers, transport_kwargs={"app": app}
        )

    answers_as_documented()
