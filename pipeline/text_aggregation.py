"""Text to TTS in pieces: the first piece of each reply is cut at its first clause break."""

from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

CLAUSE_BREAKS = ",;:—"


class FirstClauseAggregator(SimpleTextAggregator):
    """pipecat's sentence aggregator, except that a reply's first piece is cut early: at the
    first clause break once it has `min_words` words ("Sure, the capital is ..."), or at a word
    boundary once it has `max_words` words with no break at all.

    The bot starts speaking a clause sooner (a small LLM writes ~35 tokens/s, so a 20-word
    first sentence costs over half a second); later pieces stay whole sentences, which
    synthesize with better prosody and are spoken while the LLM writes ahead.
    """

    def __init__(self, *, min_words: int = 3, max_words: int = 8, **kwargs):
        super().__init__(**kwargs)
        self._min_words = min_words
        self._max_words = max_words
        self._has_spoken = False

    async def _check_sentence_with_lookahead(
        self, char: str, *, protected_end: int = 0
    ) -> Aggregation | None:
        result = await super()._check_sentence_with_lookahead(char, protected_end=protected_end)
        if result is None and not self._has_spoken and self._is_early_cut(char):
            result = Aggregation(text=self._text.strip(), type=TextType.SENTENCE)
            self._text = ""
        if result is not None:
            self._has_spoken = True
        return result

    def _is_early_cut(self, char: str) -> bool:
        words = len(self._text.split())
        if char in CLAUSE_BREAKS:
            return words >= self._min_words
        # A space after `max_words` words; not inside a sentence end's lookahead.
        return char == " " and words >= self._max_words and \
            self._text.rstrip()[-1:] not in ".?!"

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
