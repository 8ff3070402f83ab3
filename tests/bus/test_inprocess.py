"""The in-process bus: filtered fan-out, never blocking, drop-oldest with a count."""

from voxline.bus import InProcessBus, SessionBus
from voxline.bus.events import EVENT_BY_TOPIC, TranscriptFinal, TranscriptPartial


async def test_subscribers_get_only_what_their_filter_accepts():
    bus = InProcessBus()
    mine = bus.subscribe(lambda e: e.session_id == "a")
    everything = bus.subscribe()
    SessionBus(bus, session_id="a", source="w1").publish(TranscriptFinal, text="hello")
    SessionBus(bus, session_id="b", source="w1").publish(TranscriptFinal, text="other")
    got = await mine.get()
    assert (got.session_id, got.text, got.source, got.v) == ("a", "hello", "w1", 1)
    assert mine.empty()
    assert [(await everything.get()).session_id for _ in range(2)] == ["a", "b"]
    mine.close(), everything.close()


async def test_a_slow_subscriber_loses_its_oldest_events_and_they_are_counted():
    bus = InProcessBus(queue_size=10)
    slow = bus.subscribe()
    for i in range(25):
        bus.publish_nowait(TranscriptPartial(session_id="s", text=str(i)))
    assert bus.dropped == 15
    assert (await slow.get()).text == "15"
    slow.close()
    assert bus.dropped == 15


def test_every_topic_is_unique_and_json_round_trips():
    assert len(EVENT_BY_TOPIC) == len({cls.topic for cls in EVENT_BY_TOPIC.values()})
    event = TranscriptFinal(session_id="s", text="hi")
    again = EVENT_BY_TOPIC[event.topic].model_validate_json(event.model_dump_json())
    assert again == event
