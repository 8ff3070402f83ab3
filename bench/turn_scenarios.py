"""The turn-taking bench's scenarios, each a script of calls: (a) pauses mid-sentence, (b)
backchannels over a long reply, (c) real interruptions, (d) loudspeaker echo (and a barge-in
over it), (e) noise only, (f) questions in noise, (g) a conversation of complete turns.
Each returns one scored item per run (turn_scoring.py); an item whose call failed carries
"error" and is not counted in rates.
"""

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from loguru import logger
from websockets.exceptions import WebSocketException

from voxline.bench.prompts import Prompt
from voxline.bench.turn_audio import Speaker, active_rms, babble, music, pink_noise
from voxline.bench.turn_client import CallError, ScriptedCall
from voxline.bench.turn_scoring import (
    score_backchannel,
    score_complete_turn,
    score_echo,
    score_interruption,
    score_noise,
    score_question,
)
from voxline.room import Room

ANSWER_TIMEOUT_SECS = 20.0  # the first bot audio after the user's speech, at the latest
SETTLE_SECS = 1.5  # listened after the answer began, for a second answer that should not come
LEAD_IN_SECS = 0.4  # the microphone is open a moment before the user speaks
STORYTELLER = ("You are a storyteller. Whatever you are asked, answer with a long story of at "
               "least eight sentences, in plain spoken words.")

MID_PAUSE_SENTENCES = (
    ("pizza", "I would like to", "order a pizza."),
    ("rome", "Can you tell me about the", "history of Rome?"),
    ("colour", "My favourite colour is", "green because it is calm."),
    ("train", "What time does the", "next train to London leave?"),
)
STORY_REQUESTS = (
    "Tell me a long story about a friendly dragon.",
    "Tell me a long story about a lighthouse keeper and a whale.",
    "Tell me a long story about a robot who learns to paint.",
)
BACKCHANNELS = ("yeah", "okay", "uh-huh", "mm-hmm", "right", "I see", "sure")
INTERRUPTIONS = (
    "Wait, stop.",
    "Actually, can you tell me what the weather will be like tomorrow?",
    "Hold on, what is the capital of Spain?",
    "Sorry, I need to ask you something else about my train.",
    "No no, I meant a story about a cat instead.",
    "Excuse me, how far away is the moon?",
)
QUESTIONS = (
    "What is the capital of France?",
    "How do I cook rice on the stove?",
    "Can you recommend a good book to read this weekend?",
    "What should I wear when it rains?",
)
CONVERSATION = (
    "I just got back from a long walk by the river and my feet are tired.",
    "Remind me to buy milk and eggs on the way home.",
    "What is a good way to cook fresh salmon for dinner?",
    "My sister is visiting next weekend and I want to plan something fun for her.",
    "How long should I boil an egg?",
    "Please set a timer for ten minutes for the pasta.",
    "Which is bigger, the Pacific Ocean or the Atlantic Ocean?",
    "I think I will go to bed early tonight because I have a big meeting tomorrow.",
)
NOISE_LEVELS_RMS = {"pink": 0.03, "babble": 0.03, "music": 0.04}  # of full scale
QUESTION_SNR_DB = 10.0


@dataclass(frozen=True)
class Plan:
    """How much of each scenario runs: the full bench, or the short one for tests."""

    pause_sentences: int = 4
    pauses_secs: tuple[float, ...] = (0.6, 1.0, 1.5)
    backchannels: int = 7
    interruptions: int = 6
    # (gain dB, delay s) of each echo-only call: the −12 dB target gets the most runs.
    echo_rooms: tuple[tuple[float, float], ...] = (
        (-6.0, 0.03), (-6.0, 0.25), (-12.0, 0.03), (-12.0, 0.08), (-12.0, 0.15),
        (-12.0, 0.25), (-20.0, 0.06), (-20.0, 0.2))
    echo_barge_in_gains_db: tuple[float, ...] = (-6.0, -12.0, -20.0)
    noise_secs: float = 20.0
    questions: int = 4
    conversation_turns: int = 8
    reply_cap_secs: float = 15.0  # a long reply is followed this long at most
    backchannel_watch_secs: float = 8.0  # how long a reply is followed after a backchannel


FULL = Plan()
SHORT = Plan(pause_sentences=2, pauses_secs=(0.6, 1.5), backchannels=1, interruptions=2,
             echo_rooms=((-12.0, 0.06),), echo_barge_in_gains_db=(-12.0,), noise_secs=6.0,
             questions=1, conversation_turns=3, reply_cap_secs=10.0,
             backchannel_watch_secs=6.0)


@dataclass
class Script:
    """What every scenario shares: the server, the voices, the plan, seeded randomness, and
    whether to ask for server-side echo cancellation explicitly."""

    url: str
    speaker: Speaker
    plan: Plan
    rng: random.Random
    send_echo_cancellation: bool = False

    def voice(self, index: int):
        voices = self.speaker.voices
        return voices[index % len(voices)]


async def guarded(label: str, run: Callable[[], Awaitable[dict]]) -> dict:
    """One item; a call that failed is an item with its error (not counted in rates)."""
    try:
        return await run()
    except (CallError, OSError, TimeoutError, WebSocketException) as e:
        logger.warning("turn-taking bench: {} failed: {}", label, e)
        return {"label": label, "is_valid": False, "ok": False, "error": str(e)}


async def mid_pauses(script: Script) -> list[dict]:
    """(a) Sentences with a pause after a function word, and the same sentences whole."""
    items = []
    for index, (name, first, second) in enumerate(MID_PAUSE_SENTENCES[:script.plan.
                                                                      pause_sentences]):
        voice = script.voice(index)
        clips = [(pause, script.speaker.say_with_pause(first, second, pause, voice,
                                                       f"{name}-{pause:g}s"))
                 for pause in script.plan.pauses_secs]
        clips.append((0.0, script.speaker.say(f"{first} {second}", voice, f"{name}-whole")))
        for pause, clip in clips:
            item = await guarded(clip.id, lambda clip=clip: _one_turn(script, clip))
            items.append({**item, "pause_secs": pause, "voice": voice.name})
    return items


async def _one_turn(script: Script, clip: Prompt) -> dict:
    async with ScriptedCall(script.url) as call:
        await call.wait_until(LEAD_IN_SECS)
        said = call.say(clip)
        await call.wait_until(said.end_secs)
        heard = await call.wait_audible(said.end_secs, ANSWER_TIMEOUT_SECS)
        await call.wait_until((heard or call.now) + SETTLE_SECS)
        return score_complete_turn(call.record, said, call.now)


async def backchannels(script: Script) -> list[dict]:
    """(b) A backchannel 1–3 s into a long reply."""
    items = []
    for index, word in enumerate(BACKCHANNELS[:script.plan.backchannels]):
        voice = script.voice(index + 1)
        question = script.speaker.say(STORY_REQUESTS[index % len(STORY_REQUESTS)], voice)
        clip = script.speaker.say(word, voice, word)
        item = await guarded(word, lambda q=question, c=clip: _over_reply(script, q, c))
        items.append({**item, "voice": voice.name})
    return items


async def _over_reply(script: Script, question: Prompt, clip: Prompt) -> dict:
    async with ScriptedCall(script.url, system_prompt=STORYTELLER) as call:
        asked, heard = await _ask(call, question)
        await call.wait_until(heard + script.rng.uniform(1.0, 3.0))
        said = call.say(clip)
        await call.wait_reply_end(asked.end_secs, said.end_secs - call.now
                                  + script.plan.backchannel_watch_secs)
        return score_backchannel(call.record, asked, said, call.now)


async def _ask(call: ScriptedCall, question: Prompt):
    """Say `question` and wait for the reply to be heard; (what was said, when heard)."""
    await call.wait_until(LEAD_IN_SECS)
    asked = call.say(question)
    heard = await call.wait_audible(asked.end_secs, asked.end_secs - call.now
                                    + ANSWER_TIMEOUT_SECS)
    if heard is None:
        seen = ", ".join(str(e.get("type")) for _, e in call.record.events) or "no events"
        raise CallError(f"no reply to {question.text!r} within {ANSWER_TIMEOUT_SECS:g} s "
                        f"({seen})")
    return asked, heard


async def interruptions(script: Script) -> list[dict]:
    """(c) A sentence or question (or "wait, stop") spoken over a long reply."""
    items = []
    for index, text in enumerate(INTERRUPTIONS[:script.plan.interruptions]):
        voice = script.voice(index + 2)
        question = script.speaker.say(STORY_REQUESTS[index % len(STORY_REQUESTS)], voice)
        clip = script.speaker.say(text, voice, f"interrupt-{index}")
        item = await guarded(clip.id, lambda q=question, c=clip: _barge_in(script, q, c))
        items.append({**item, "voice": voice.name})
    return items


async def _barge_in(script: Script, question: Prompt, clip: Prompt,
                    room: Room | None = None) -> dict:
    echo_cancellation = True if room and script.send_echo_cancellation else None
    async with ScriptedCall(script.url, room=room, system_prompt=STORYTELLER,
                            echo_cancellation=echo_cancellation) as call:
        _, heard = await _ask(call, question)
        await call.wait_until(heard + script.rng.uniform(1.0, 3.0))
        said = call.say(clip)
        await call.wait_until(said.end_secs)
        answer = await call.wait_event("turn.metrics", said.onset_secs, ANSWER_TIMEOUT_SECS)
        if answer is not None:
            await call.wait_audible(answer, 3.0)
        await call.wait_until(call.now + 0.5)
        item = score_interruption(call.record, said, call.now)
        return {**item, "echo_cancellation_sent": call.echo_cancellation_sent}


async def echo(script: Script) -> list[dict]:
    """(d) Long replies played into leaky rooms with nobody talking, then barge-ins over
    the echo."""
    items = []
    for index, (gain_db, delay_secs) in enumerate(script.plan.echo_rooms):
        room = Room(delay_secs=delay_secs, gain_db=gain_db)
        question = script.speaker.say(STORY_REQUESTS[index % len(STORY_REQUESTS)],
                                      script.voice(index))
        item = await guarded(f"echo {gain_db:g} dB", lambda r=room, q=question:
                             _echo_only(script, r, q))
        items.append({**item, "kind": "echo", "gain_db": gain_db, "delay_secs": delay_secs})
    for index, gain_db in enumerate(script.plan.echo_barge_in_gains_db):
        room = Room(delay_secs=round(script.rng.uniform(0.03, 0.25), 3), gain_db=gain_db)
        voice = script.voice(index + 3)
        question = script.speaker.say(STORY_REQUESTS[index % len(STORY_REQUESTS)], voice)
        clip = script.speaker.say(INTERRUPTIONS[1 + index % (len(INTERRUPTIONS) - 1)], voice,
                                  f"barge-in {gain_db:g} dB")
        item = await guarded(clip.id, lambda r=room, q=question, c=clip:
                             _barge_in(script, q, c, room=r))
        items.append({**item, "kind": "barge_in", "gain_db": gain_db,
                      "delay_secs": room.delay_secs})
    return items


async def _echo_only(script: Script, room: Room, question: Prompt) -> dict:
    echo_cancellation = True if script.send_echo_cancellation else None
    async with ScriptedCall(script.url, room=room, system_prompt=STORYTELLER,
                            echo_cancellation=echo_cancellation) as call:
        asked, _ = await _ask(call, question)
        await call.wait_reply_end(asked.end_secs, script.plan.reply_cap_secs)
        item = score_echo(call.record, asked, call.now)
        return {**item, "echo_cancellation_sent": call.echo_cancellation_sent}


async def noise(script: Script) -> list[dict]:
    """(e) Noise only (pink, babble, music-like): nothing should be answered."""
    rng = np.random.default_rng(script.rng.randrange(2**32))
    secs = script.plan.noise_secs
    voices = [script.speaker.say(text, script.voice(i)).pcm
              for i, text in enumerate(CONVERSATION[:5])]
    beds = {"pink": pink_noise(secs, NOISE_LEVELS_RMS["pink"], rng),
            "babble": babble(secs, NOISE_LEVELS_RMS["babble"], voices, rng),
            "music": music(secs, NOISE_LEVELS_RMS["music"], rng)}
    items = []
    for name, bed in beds.items():
        item = await guarded(name, lambda bed=bed: _noise_only(script, bed, secs))
        items.append({"label": name, **item, "level_rms": NOISE_LEVELS_RMS[name]})
    return items


async def _noise_only(script: Script, bed: np.ndarray, secs: float) -> dict:
    async with ScriptedCall(script.url) as call:
        call.set_background(bed)
        await call.wait_until(secs)
        call.set_background(None)
        await call.wait_until(secs + 3.0)  # a late answer to the noise still counts
        return score_noise(call.record, 0.0, call.now)


async def questions(script: Script) -> list[dict]:
    """(f) Questions asked clean and in pink noise at QUESTION_SNR_DB (noise throughout the
    call, not only under the words)."""
    rng = np.random.default_rng(script.rng.randrange(2**32))
    items = []
    for index, text in enumerate(QUESTIONS[:script.plan.questions]):
        voice = script.voice(len(script.speaker.voices) - 1 - index)  # Kokoro, if loaded
        clip = script.speaker.say(text, voice, f"question-{index}")
        level = active_rms(clip.pcm) / 10 ** (QUESTION_SNR_DB / 20)
        for condition, bed in (("clean", None), ("noisy", pink_noise(30.0, level, rng))):
            item = await guarded(clip.id, lambda c=clip, b=bed: _question(script, c, b))
            items.append({**item, "condition": condition, "voice": voice.name})
    return items


async def _question(script: Script, clip: Prompt, bed: np.ndarray | None) -> dict:
    async with ScriptedCall(script.url) as call:
        call.set_background(bed)
        await call.wait_until(LEAD_IN_SECS)
        said = call.say(clip)
        await call.wait_until(said.end_secs)
        heard = await call.wait_audible(said.end_secs, ANSWER_TIMEOUT_SECS)
        await call.wait_until((heard or call.now) + 0.5)
        return score_question(call.record, said, call.now)


async def conversation(script: Script) -> list[dict]:
    """(g) One call of complete turns, each spoken once the last reply has ended."""
    turns = script.plan.conversation_turns
    clips = [script.speaker.say(CONVERSATION[i % len(CONVERSATION)], script.voice(i),
                                f"turn-{i}") for i in range(turns)]
    items: list[dict] = []

    async def talk() -> dict:
        async with ScriptedCall(script.url) as call:
            await call.wait_until(LEAD_IN_SECS)
            for index, clip in enumerate(clips):
                said = call.say(clip)
                await call.wait_until(said.end_secs)
                await call.wait_audible(said.end_secs, ANSWER_TIMEOUT_SECS)
                await call.wait_reply_end(said.end_secs, script.plan.reply_cap_secs, 0.6)
                item = score_complete_turn(call.record, said, call.now)
                items.append({**item, "voice": script.voice(index).name})
        return {}

    failed = await guarded("conversation", talk)
    return items + ([failed] if failed else [])
