"""One way to count a page's queries, for every N+1 test (STYLE.md: every list and detail view,
with 5 and 50 rows).

The first request of a client runs one-off queries (the session, content types, the caches
filled per process), so a count taken cold depends on which test ran before it. Each count
here is of a second, warm request."""

from collections.abc import Callable

from django.db import connection
from django.test.utils import CaptureQueriesContext


def count_queries(
    client, url: str, data: dict | None = None, check: Callable | None = None, status: int = 200
) -> int:
    """The queries of a warm GET of `url`: the request is made once to warm up, then counted.
    `check(response)` may assert on the counted response."""
    client.get(url, data or {})
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, data or {})
    assert response.status_code == status, (url, response.status_code, response.content[:500])
    if check is not None:
        check(response)
    return len(queries)


def assert_constant_queries(
    client,
    url: str,
    grow: Callable[[int], object],
    *,
    more: Callable[[int], object] | None = None,
    small: int = 5,
    large: int = 50,
    data: dict | None = None,
    check: Callable | None = None,
) -> int:
    """`grow(n)` adds n rows (`more(n)` adds the rows from `small` to `large`, where they are
    added differently); the page must cost as many queries with `small` rows as with `large`.
    Returns the count."""
    grow(small)
    few = count_queries(client, url, data, check)
    (more or grow)(large - small)
    many = count_queries(client, url, data, check)
    assert many == few, f"{url}: {few} queries with {small} rows, {many} with {large}"
    return few
