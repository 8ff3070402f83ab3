"""Text to TTS in pieces: a reply opens with clauses, then goes on in whole sentences, cut
short only when its audio is about to run out."""

from collections.abc import Callable

from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

CLAUSE_BREAKS = ",;:—"
# Words a piece should not end on when cut for length: "A friendly dragon is a | ..." sounds
# broken; one more word ("... is a dragon") does not cost much.
LEADING_WORDS = frozenset("a an the of to and or but in on at for with from my your his her its "
                          "their our this that".split())


class FirstClauseAggregator(SimpleTextAggregator):
    """pipecat's sentence aggregator, except that a reply's opening is spoken in short pieces
    and that a line break always ends a piece.

    The first piece is cut at the first clause break once it has `min_words` words ("Sure,
    the capital is ..."; not "384,400"), or at a word boundary once it has `max_words` words
    with no break at all (not after "a", "the", ...). Until the reply has spoken `ramp_words`
    words, the next pieces are cut the same way at `ramp_max_words`. After that, whole
    sentences.

    The bot starts speaking sooner: every word of the first piece must be written (on 2 cores
    the LLM writes ~20 tokens/s) and synthesized before any audio plays. And it keeps
    speaking: the second piece must be written and synthesized while the first one plays
    (~1 s), and with four sessions opening replies at once the LLM writes about half as fast
    per reply, so a whole second sentence often came after the first clause had finished
    playing (docs/performance.md#pipelinetext_aggregationpy). Once a few pieces are queued,
    whole sentences, which synthesize with better prosody.

    Except when the audio ahead is about to run out (`audio_lead`, seconds of this reply's
    audio not yet played, below `cut_lead_secs`): then a piece of `min_cut_words` words or
    more is spoken at the next word, so the bot speaks on while the LLM writes slowly (other
    sessions' replies share the CPU) rather than falling silent until the sentence ends.
    """

    def __init__(self, *, min_words: int = 2, max_words: int = 5, ramp_words: int = 12,
                 ramp_max_words: int = 8, audio_lead: Callable[[], float] | None = None,
                 cut_lead_secs: float = 0.5, min_cut_words: int = 3, **kwargs):
        super().__init__(**kwargs)
        self._audio_lead = audio_lead
        self._cut_lead_secs = cut_lead_secs
        self._min_cut_words = min_cut_words
        self._min_words = min_words
        self._max_words = max_words
        self._ramp_words = ramp_words
        self._ramp_max_words = ramp_max_words
        self._words_spoken = 0  # in this reply's pieces so far

    async def _check_sentence_with_lookahead(
        self, char: str, *, protected_end: int = 0
    ) -> Aggregation | None:
        if char == "\n" and self._text.strip():
            # A line break ends a piece: list items and paragraphs are spoken as they come.
            # The sentence tokenizer would hold a list of book titles ("- Dune by Frank
            # Herbert") as one sentence until the reply's end, with the bot silent meanwhile.
            result = Aggregation(text=self._text.strip(), type=TextType.SENTENCE)
            await super().reset()  # the base's buffer only: this reply goes on, no new opening
        else:
            result = await super()._check_sentence_with_lookahead(
                char, protected_end=protected_end)
            if result is None and self._is_early_cut(char):
                result = Aggregation(text=self._text.strip(), type=TextType.SENTENCE)
                self._text = ""
        if result is not None:
            self._words_spoken += len(result.text.split())
        return result

    def _is_early_cut(self, char: str) -> bool:
        if char != " ":
            return False
        # At the space after a word: "384,400" is a number, "dragon, named" a clause break.
        text = self._text.rstrip()
        words = len(text.split())
        # Not inside a sentence end's lookahead, nor after "a", "the", ...
        is_word_cut = text[-1:] not in ".?!" and \
            text.rsplit(" ", 1)[-1].lower() not in LEADING_WORDS
        if self._words_spoken >= self._ramp_words:
            return is_word_cut and words >= self._min_cut_words and self._is_running_dry()
        max_words = self._max_words if self._words_spoken == 0 else self._ramp_max_words
        if text[-1:] in CLAUSE_BREAKS:
            return words >= self._min_words
        return is_word_cut and (words >= max_words or (
            words >= self._min_cut_words and self._is_running_dry()))

    def _is_running_dry(self) -> bool:
        """The reply's audio runs out soon (its first piece has been spoken already)."""
        return self._words_spoken > 0 and self._audio_lead is not None and \
            self._audio_lead() < self._cut_lead_secs

    async def flush(self) -> Aggregation | None:
        """End of a reply: the next one opens in short pieces again."""
        self._words_spoken = 0
        return await super().flush()

    async def handle_interruption(self):
        """Interrupted: the next reply opens in short pieces again."""
        self._words_spoken = 0
        await super().handle_interruption()

    async def reset(self):
        """Cleared: the next reply opens in short pieces again."""
        self._words_spoken = 0
        await super().reset()
