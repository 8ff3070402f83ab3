"""The per-client outbox: order, and the shutdown notice as the client's last message."""

from voxline.transports.client_events import ClientOutbox


async def test_nothing_is_sent_after_the_shutdown_notice():
    """Regression: a session still ending after the notice (an STT interim) sent a
    `transcript.partial` after it, so clients that stop at the notice saw one more event."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    outbox = ClientOutbox(send)
    outbox.put({"type": "transcript.partial", "text": "before"})
    await outbox.say_shutting_down()
    outbox.put({"type": "transcript.partial", "text": "after"})
    outbox.error("internal", "late")
    await outbox.close()

    assert [m.get("text") or m.get("code") for m in sent] == ["before", "server_shutdown"]
