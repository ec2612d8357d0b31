"""The API's JSON parser: DRF's, with a limit on nesting depth and no NUL character in any
string or key (PostgreSQL cannot store one), so a hostile body is a 400, never a 500."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, JSONParser

MAX_DEPTH = 64


def json_problem(data, max_depth: int = MAX_DEPTH) -> str | None:
    """Why parsed JSON `data` is refused, or None. Walks without recursion."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                return f"JSON nested deeper than {max_depth} levels."
            if isinstance(value, dict):
                for key, item in value.items():
                    if "\x00" in key:
                        return "JSON contains a NUL character (\\u0000)."
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and "\x00" in value:
            return "JSON contains a NUL character (\\u0000)."
    return None


class _DepthLimit:
    max_depth = MAX_DEPTH

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError(f"JSON nested deeper than {self.max_depth} levels.") from error
        problem = json_problem(data, self.max_depth)
        if problem:
            raise ParseError(problem)
        return data


class BoundedJSONParser(_DepthLimit, JSONParser):
    """The default parser. DRF reads a `JSONParser`'s body through `request.body`, so
    `DATA_UPLOAD_MAX_MEMORY_SIZE` bounds it as well as `qms.middleware`."""


class _StreamJSONParser(BaseParser):
    media_type = JSONParser.media_type
    renderer_class = JSONParser.renderer_class
    strict = JSONParser.strict
    parse = JSONParser.parse


class StreamedJSONParser(_DepthLimit, _StreamJSONParser):
    """The same rules for a route with its own, larger body limit (the EPCIS import): not a
    `JSONParser`, so DRF hands it the request stream instead of `request.body` and
    `DATA_UPLOAD_MAX_MEMORY_SIZE` does not apply; `qms.middleware` enforces the route's limit."""
