"""The one domain error: a business rule refused an action. Raised by services, shown inline in
forms and as a 409 JSON body by the API."""

from enum import StrEnum


class RuleViolation(Exception):
    def __init__(self, code: StrEnum | str, detail: str):
        super().__init__(detail)
        self.code = str(code)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class KernelError(StrEnum):
    SIGNATURE_PASSWORD = "signature_password_invalid"
    SIGNATURE_LOCKED = "account_locked"
    SIGNATURE_NOT_ALLOWED = "signature_not_allowed"
    SIGNATURE_MEANING = "signature_meaning_invalid"
    REASON_REQUIRED = "reason_required"
    NOT_FOUND = "not_found"
