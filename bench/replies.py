"""`voxline bench --replies`: how good the spoken replies are, per model and reply style.

Runs the versioned conversations of `bench/data/replies-v*.json` through the local LLM the way
a session writes replies (`pipeline/reply_writer.py`: same prompt, examples, sampling, echo
guard, history window) and scores each reply (`bench/reply_scores.py`).
"""

import json
import statistics
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from voxline.agent.services import reply_style
from voxline.bench.reply_scores import score_reply
from voxline.config.settings import VoxlineSettings
from voxline.models import catalog
from voxline.models.llama import LlamaEngine
from voxline.models.prompt import prompt_messages
from voxline.models.registry import ModelRegistry
from voxline.pipeline.context_window import trim_messages
from voxline.pipeline.reply_writer import EchoCaught, ReplyStyle, write_reply

REPLY_SET = Path(__file__).with_name("data") / "replies-v1.json"
SHORT_CONVERSATIONS = 2  # CI's short mode: the first conversations of each split
# The reply style before this bench existed: its prompt alone, no examples, no penalties, no
# guard; kept to show what each part of the default changes.
LEGACY_SYSTEM_PROMPT = ("You are Voxline, a friendly voice assistant. Answer in one or two "
                        "short spoken sentences. Never use lists, markdown, code or emojis.")


class ReplySetError(Exception):
    """The reply set cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Style:
    """A named way of writing replies: what the bench compares."""

    name: str
    system_prompt: str
    examples: tuple[tuple[str, str], ...]
    reply: ReplyStyle


def styles(settings: VoxlineSettings) -> dict[str, Style]:
    """`default`: the settings as configured; the others take one part away each."""
    agent, llm = settings.agent, settings.llm
    default = Style("default", agent.system_prompt, agent.examples(), reply_style(llm, agent))
    bare = ReplyStyle(max_tokens=llm.max_tokens, temperature=0.3, echo_guard=False)
    return {
        "default": default,
        "no-guard": replace(default, name="no-guard",
                            reply=replace(default.reply, echo_guard=False)),
        "no-examples": replace(default, name="no-examples", examples=()),
        "legacy": Style("legacy", LEGACY_SYSTEM_PROMPT, (), bare),
    }


def load_reply_set(path: Path = REPLY_SET) -> dict:
    """The conversations of a reply set, checked."""
    try:
        data = json.loads(path.read_text())
        for conversation in data["conversations"]:
            for turn in conversation["turns"]:
                if not str(turn["user"]).strip() or not turn["kind"]:
                    raise ValueError(f"an empty turn in '{conversation['id']}'")
    except OSError as e:
        raise ReplySetError(f"cannot read reply set {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ReplySetError(f"{path}: need {{conversations: [{{id, split, turns: [{{kind, "
                            f"user, answer?}}]}}]}}: {e}") from None
    return data


def pick_conversations(data: dict, *, split: str, short: bool) -> list[dict]:
    """The conversations of `split` (tune, heldout or all); `short`: the first few of each."""
    picked = []
    for name in ("tune", "heldout"):
        if split not in (name, "all"):
            continue
        group = [c for c in data["conversations"] if c.get("split", "tune") == name]
        picked += group[:SHORT_CONVERSATIONS] if short else group
    return picked


def run_conversation(engine: LlamaEngine, style: Style, conversation: dict,
                     *, max_history: int) -> list[dict]:
    """Each turn of one conversation: the reply, its scores and timings."""
    history: list[dict] = []
    results = []
    session_key = f"bench-{conversation['id']}-{style.name}"
    for turn in conversation["turns"]:
        history.append({"role": "user", "content": turn["user"]})
        history = trim_messages(history, max_history)
        messages = prompt_messages(style.system_prompt, style.examples, history)
        started = time.monotonic()
        first_piece_secs, pieces, caught = None, [], []
        for item in write_reply(engine, messages, style=style.reply, stop=threading.Event(),
                                session_key=session_key):
            if isinstance(item, EchoCaught):
                caught.append(item.text)
                continue
            if first_piece_secs is None and item.strip():
                first_piece_secs = time.monotonic() - started
            pieces.append(item)
        reply = "".join(pieces).strip()
        history.append({"role": "assistant", "content": reply})
        score = score_reply(reply, turn["user"], kind=turn["kind"], answer=turn.get("answer"))
        results.append({"conversation": conversation["id"], "split": conversation.get("split"),
                        "kind": turn["kind"], "user": turn["user"], "reply": reply,
                        "echo_guarded": caught, "first_piece_secs": first_piece_secs,
                        "reply_secs": time.monotonic() - started, **asdict(score)})
    return results


def summarize(turns: list[dict]) -> dict:
    """The rubric's figures over a run's turns."""
    factual = [t for t in turns if t["is_right"] is not None]
    firsts = sorted(t["first_piece_secs"] for t in turns if t["first_piece_secs"] is not None)
    limited = [t for t in turns if t["kind"] != "more"]
    return {
        "turns": len(turns),
        "echo_rate": _rate(turns, "is_echo"),
        "echo_rate_statements": _rate([t for t in turns if t["kind"] in (
            "statement", "instruction")], "is_echo"),
        "factual_accuracy": _rate(factual, "is_right"),
        "factual_turns": len(factual),
        "within_two_sentences": 1 - _rate(limited, "is_too_long"),
        "formatted_rate": _rate(turns, "is_formatted"),
        "words_median": statistics.median(t["words"] for t in turns) if turns else 0,
        "sentences_median": statistics.median(t["sentences"] for t in turns) if turns else 0,
        "guard_hits": sum(len(t["echo_guarded"]) for t in turns),
        "first_piece_p50_secs": _quantile(firsts, 0.5),
        "first_piece_p95_secs": _quantile(firsts, 0.95),
        "empty_replies": sum(1 for t in turns if not t["reply"]),
    }


def _rate(turns: list[dict], key: str) -> float:
    return sum(1 for t in turns if t[key]) / len(turns) if turns else 0.0


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def load_engine(settings: VoxlineSettings, model: str) -> LlamaEngine:
    """A packaged LLM as a session gets it (one slot: the bench runs one conversation)."""
    registry = ModelRegistry(settings.models.cache_dir)
    spec = catalog.LLM_MODELS[model]
    return LlamaEngine(model_path=registry.path_of(spec), n_ctx=settings.llm.n_ctx,
                       n_threads=settings.llm.n_threads, slots=1,
                       chat_template=spec.chat_template)


def run_replies(settings: VoxlineSettings, *, models: list[str], style_names: list[str],
                split: str = "all", short: bool = False, reply_set: Path = REPLY_SET) -> dict:
    """Every conversation for every model and style: per-turn results and summaries."""
    data = load_reply_set(reply_set)
    conversations = pick_conversations(data, split=split, short=short)
    known = styles(settings)
    if unknown := [s for s in style_names if s not in known]:
        raise ReplySetError(f"no reply style named {', '.join(unknown)}; the styles are: "
                            f"{', '.join(known)}")
    report: dict = {"reply_set": reply_set.name, "version": data.get("version"),
                    "split": split, "short": short, "runs": []}
    for model in models:
        engine = load_engine(settings, model)
        try:
            for name in style_names:
                turns = [t for c in conversations for t in run_conversation(
                    engine, known[name], c, max_history=settings.agent.max_history_messages)]
                report["runs"].append({
                    "model": model, "style": name, "summary": summarize(turns),
                    "by_split": {s: summarize([t for t in turns if t["split"] == s])
                                 for s in ("tune", "heldout")},
                    "turns": turns})
        finally:
            engine.close()
    return report
