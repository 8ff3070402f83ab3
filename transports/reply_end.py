"""When a `/ws` client may consider the bot's answer over, from the protocol's events
(docs/protocol.md). Light on imports: `voxline talk` uses it."""


class ReplyEnd:
    """Tells, event by event, when the bot has finished answering: it wrote its whole reply
    (`bot.reply`), all of it has been spoken (`bot.text`) or it was interrupted, and its audio
    has stopped. A `bot.stopped_speaking` alone is not the end: the audio pauses whenever
    synthesis falls behind between sentences."""

    def __init__(self):
        self.has_spoken = False
        self._is_speaking = False
        self._spoken = ""
        self._reply: dict | None = None

    def see(self, event: dict) -> bool:
        """Take the next event; True once the reply is over."""
        match event.get("type"):
            case "bot.started_speaking":
                self.has_spoken = self._is_speaking = True
            case "bot.stopped_speaking":
                self._is_speaking = False
            case "bot.text":
                self._spoken += _letters(event["text"])
            case "bot.reply":
                self._reply = event
        return not self.waiting_for()

    def waiting_for(self) -> str:
        """What the reply still lacks, in words ("" once it is over): for an error message
        when it never comes."""
        if not self.has_spoken:
            return "the bot has not started speaking"
        if self._is_speaking:
            return "the bot is still speaking"
        if self._reply is None:
            return "the bot has not finished writing its reply (no bot.reply)"
        if self._reply["interrupted"] or _letters(self._reply["text"]) in self._spoken:
            return ""
        return (f"part of the reply was never spoken (bot.reply {self._reply['text']!r}, "
                f"spoken letters {self._spoken[-80:]!r})")


def _letters(text: str) -> str:
    """Only letters and digits: spoken sentences and the reply differ in spaces between them."""
    return "".join(ch for ch in text.lower() if ch.isalnum())
