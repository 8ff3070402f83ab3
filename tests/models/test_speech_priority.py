"""The LLM waits while a reply's first words are synthesized, and never for longer than allowed."""

import threading
import time

from voxline.models.speech_priority import SpeechPriority


def _llm_step_wait(priority: SpeechPriority) -> float:
    started = time.monotonic()
    priority.wait_for_speech()
    return time.monotonic() - started


def test_no_synthesis_no_wait():
    assert _llm_step_wait(SpeechPriority()) < 0.05


def test_the_llm_waits_until_the_first_words_are_synthesized():
    priority = SpeechPriority(max_wait_secs=5.0)
    synthesizing = threading.Event()

    def synthesize():
        with priority.first_words():
            synthesizing.set()
            time.sleep(0.3)

    thread = threading.Thread(target=synthesize)
    thread.start()
    synthesizing.wait()
    waited = _llm_step_wait(priority)
    thread.join()
    assert 0.2 < waited < 2.0, waited


def test_a_stuck_synthesis_only_slows_the_llm():
    priority = SpeechPriority(max_wait_secs=0.2)
    with priority.first_words():
        waited = _llm_step_wait(priority)
    assert 0.15 < waited < 1.0, waited
