"""Text to TTS in pieces: the first piece of each reply is cut at its first clause break."""

from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

CLAUSE_BREAKS = ",;:—"


class FirstClauseAggregator(SimpleTextAggregator):
    """pipecat's sentence aggregator, except that a reply's first piece ends at the first
    clause break once it has `min_words` words ("Sure, ..." → "Sure, the capital is", ...).

    The bot starts speaking a clause sooner; later pieces stay whole sentences, which
    synthesize with better prosody and are spoken while the LLM writes ahead.
    """

    def __init__(self, *, min_words: int = 3, **kwargs):
        super().__init__(**kwargs)
        self._min_words = min_words
        self._has_spoken = False

    async def _check_sentence_with_lookahead(
        self, char: str, *, protected_end: int = 0
    ) -> Aggregation | None:
        result = await super()._check_sentence_with_lookahead(char, protected_end=protected_end)
        if result is None and not self._has_spoken and char in CLAUSE_BREAKS \
                and len(self._text.split()) >= self._min_words:
            result = Aggregation(text=self._text.strip(), type=TextType.SENTENCE)
            self._text = ""
        if result is not None:
            self._has_spoken = True
        return result

    async def flush(self) -> Aggregation | None:
        """End of a reply: the next one starts with a clause again."""
        self._has_spoken = False
        return await super().flush()

    async def handle_interruption(self):
        """Interrupted: the next reply starts with a clause again."""
        self._has_spoken = False
        await super().handle_interruption()

    async def reset(self):
        """Cleared: the next reply starts with a clause again."""
        self._has_spoken = False
        await super().reset()
