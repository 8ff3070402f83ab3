"""pipecat's OpenAI LLM service behind a shared circuit breaker, with a spoken apology."""

import asyncio

import httpx2
import openai
from loguru import logger
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.openai.llm import OpenAILLMService

from voxline.pipeline.circuit_breaker import CircuitBreaker


class RemoteLLMError(Exception):
    """A turn the remote LLM did not answer. `code` is the client's error code and the
    `voxline_errors_total{kind}` label; the message is safe to show a client (no URL)."""

    def __init__(self, code: str, message: str, status_code: int | None = None):
        super().__init__(message)
        self.code = code
        # Read by pipecat's error classification: a 401 stays permanent, a 500 transient.
        self.status_code = status_code


class RemoteLLMService(OpenAILLMService):
    """`OpenAILLMService` whose failed turns are spoken, not silent.

    A turn fails when the server errors, cannot be reached, or sends no token within
    `first_token_timeout_secs`. Then the service speaks `apology` (as LLM text, so TTS, the
    client's `bot.text` and the history get it), reports the failure to the shared `breaker`
    and pushes the error (pipecat's `push_error`, category SERVER or CONNECTIVITY, so the
    processor stays usable). While the breaker is open a turn fails at once with no request.

    pipecat's own `retry_on_timeout` is not used: it re-issues a slow request with no timeout
    at all, which is the silence this class exists to end.
    """

    def __init__(
        self, *, breaker: CircuitBreaker, first_token_timeout_secs: float, apology: str,
        **kwargs,
    ):
        # Set before super().__init__, which calls create_client.
        self._first_token_timeout_secs = first_token_timeout_secs
        super().__init__(**kwargs)
        self._breaker = breaker
        self._apology = apology
        self._first_token_deadline: asyncio.Timeout | None = None

    def create_client(self, **kwargs):
        """pipecat's client without the SDK's own retries (two, with backoff: seconds of
        silence per turn; the breaker decides about retrying). The timeout bounds connecting
        and every read, so a stream that stalls mid-reply fails too."""
        client = super().create_client(**kwargs)
        return client.with_options(max_retries=0, timeout=self._first_token_timeout_secs)

    async def _process_context(self, context: LLMContext):
        """One turn through the breaker; on failure, the apology, then the error is raised
        for pipecat's `process_frame` to push."""
        if not self._breaker.allow_request():
            await self._push_llm_text(self._apology)
            raise RemoteLLMError(
                "llm_circuit_open",
                f"the language model is unavailable ({self._breaker.describe()})",
            )
        try:
            async with asyncio.timeout(self._first_token_timeout_secs) as deadline:
                self._first_token_deadline = deadline
                await super()._process_context(context)
        except (TimeoutError, openai.APITimeoutError, httpx2.TimeoutException) as e:
            error, cause = RemoteLLMError(
                "llm_timeout", f"the language model did not answer within "
                f"{self._first_token_timeout_secs:g} s"), e
        except openai.APIStatusError as e:
            error, cause = RemoteLLMError(
                "llm_unavailable", f"the language model failed (HTTP {e.status_code})",
                status_code=e.status_code), e
        except (openai.APIError, httpx2.TransportError) as e:
            error, cause = RemoteLLMError(
                "llm_unavailable",
                f"the language model cannot be reached ({type(e).__name__})"), e
        except BaseException:
            self._breaker.release()  # cancelled by an interruption: it proves nothing
            raise
        else:
            self._breaker.record_success()
            return
        finally:
            self._first_token_deadline = None
        self._breaker.record_failure(str(error))
        logger.warning("{}: {} at {}; circuit {}", self, error, self._client.base_url,
                       self._breaker.state)
        await self._push_llm_text(self._apology)
        raise error from cause

    async def _push_llm_text(self, text: str):
        """The first token ends the first-token deadline; later pauses are the client's
        read timeout's business."""
        if self._first_token_deadline is not None:
            self._first_token_deadline.reschedule(None)
            self._first_token_deadline = None
        await super()._push_llm_text(text)
