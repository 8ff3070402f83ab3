"""`voxline bench --replies`: the reply-quality set, its scores, and CI's short run."""

import asyncio
import json
import sys
from pathlib import Path

import pytest

from voxline.bench.replies import (
    REPLY_SET,
    ReplySetError,
    load_reply_set,
    pick_conversations,
    run_replies,
)
from voxline.bench.reply_scores import score_reply
from voxline.config import load_settings

KINDS = {"statement", "instruction", "smalltalk", "question", "more", "topic_change",
         "correction"}


def test_the_set_is_large_and_varied_enough():
    data = load_reply_set()
    turns = [t for c in data["conversations"] for t in c["turns"]]
    assert len(turns) >= 60
    assert {t["kind"] for t in turns} == KINDS
    assert all(len(c["turns"]) >= 4 for c in data["conversations"])  # conversations, not lines
    assert sum(1 for t in turns if t.get("answer")) >= 12  # known answers to check facts on
    assert {c["split"] for c in data["conversations"]} == {"tune", "heldout"}


def test_short_mode_takes_the_first_conversations_of_each_split():
    data = load_reply_set()
    short = pick_conversations(data, split="all", short=True)
    assert [c["split"] for c in short] == ["tune", "tune", "heldout", "heldout"]
    assert len(pick_conversations(data, split="heldout", short=False)) == sum(
        1 for c in data["conversations"] if c["split"] == "heldout")


@pytest.mark.parametrize(("reply", "kind", "answer", "expected"), [
    ("The capital of Japan is Tokyo.", "question", ["tokyo"], {"is_right": True}),
    ("It is Kyoto.", "question", ["tokyo"], {"is_right": False}),
    ("Nice! What kind?", "statement", None, {"is_right": None, "sentences": 2,
                                             "is_too_long": False}),
    ("One. Two. Three.", "statement", None, {"is_too_long": True}),
    ("One. Two. Three.", "more", None, {"is_too_long": False}),  # the user asked for more
    ("Try these:\n- rice\n- beans", "instruction", None, {"is_formatted": True}),
    ("**Sure** thing", "statement", None, {"is_formatted": True}),
    ("Great idea 😀", "statement", None, {"is_formatted": True}),
    ("Water boils at 212 degrees.", "correction", ["212"], {"is_right": True,
                                                             "is_formatted": False}),
])
def test_a_reply_is_scored_as_a_listener_would(reply, kind, answer, expected):
    score = score_reply(reply, "Tell me something.", kind=kind, answer=answer)
    for key, value in expected.items():
        assert getattr(score, key) == value, (key, score)


def test_a_broken_set_or_style_gets_one_clear_line(tmp_path):
    broken = tmp_path / "set.json"
    broken.write_text('{"conversations": [{"id": "x", "turns": [{"kind": "statement"}]}]}')
    with pytest.raises(ReplySetError, match=r"set\.json: need"):
        load_reply_set(broken)
    with pytest.raises(ReplySetError, match="cannot read reply set"):
        load_reply_set(tmp_path / "missing.json")
    with pytest.raises(ReplySetError, match="the styles are: default, no-guard"):
        run_replies(load_settings(), models=["smollm2-135m"], style_names=["chatty"],
                    reply_set=REPLY_SET)


async def test_the_short_run_writes_every_figure(tmp_path):
    out = tmp_path / "replies.json"
    voxline = Path(sys.executable).parent / "voxline"
    process = await asyncio.create_subprocess_exec(
        str(voxline), "bench", "--replies", "--short", "--llm", "smollm2-135m",
        "--styles", "default,legacy", "--json", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 0, stderr.decode()[-2000:]
    report = json.loads(out.read_text())
    assert [(r["model"], r["style"]) for r in report["runs"]] == [
        ("smollm2-135m", "default"), ("smollm2-135m", "legacy")]
    for run in report["runs"]:
        summary = run["summary"]
        assert summary["turns"] == 24 and summary["empty_replies"] == 0
        for key in ("echo_rate", "factual_accuracy", "within_two_sentences", "formatted_rate"):
            assert 0 <= summary[key] <= 1, key
        assert summary["factual_turns"] >= 4
        assert 0 < summary["first_piece_p50_secs"] <= summary["first_piece_p95_secs"] < 10
        assert set(run["by_split"]) == {"tune", "heldout"}
        assert all(t["reply"] for t in run["turns"])
    table = stdout.decode()
    assert "default" in table and "legacy" in table and "echo" in table
