"""Errors in the shape OpenAI's API gives them (`{"error": {"message", "type", "param",
"code"}}`), which its SDKs turn into their exception classes."""

from fastapi.responses import JSONResponse

from voxline.auth import Refusal

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 503: "server_error"}


class OpenAIError(Exception):
    """A request refused before any output, answered as `response()`."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 retry_after_secs: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param
        self.retry_after_secs = retry_after_secs

    @classmethod
    def from_refusal(cls, refusal: Refusal) -> "OpenAIError":
        return cls(refusal.status, refusal.code, refusal.message,
                   retry_after_secs=refusal.retry_after_secs)

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after_secs)} if self.retry_after_secs else None
        body = {"error": {"message": self.message,
                          "type": ERROR_TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=headers)
