"""Kokoro-82M (int8 ONNX) speech synthesis for English text.

Kokoro's acoustic model does not know languages, only phonemes in the symbol set of `misaki`, the
phonemiser it was trained with. The packaged Kokoro distribution here is a Japanese frontend with
Japanese voices only, so English goes through `espeak-ng` instead: its IPA is rewritten into
misaki's symbols (the same table misaki's own espeak fallback uses), looked up in the packaged
vocab, and spoken with one of the Japanese voice packs. The result has a light accent but is
clearly intelligible.

Text is cut into sentences, and each sentence into clauses at punctuation; every clause goes to
espeak-ng separately (it drops punctuation from its output) and the punctuation is put back, because
Kokoro uses it for pauses and intonation. One PCM chunk is produced per sentence, or per piece of a
sentence that is too long for the model's 510-token window.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
from loguru import logger

from voxline.models.compute import ComputeArbiter
from voxline.models.onnx_memory import ShrinkingSession

SAMPLE_RATE = 24_000
MAX_TOKENS = 510  # Kokoro's context is 512 including the pad token at each end
STYLE_DIM = 256

_ESPEAK_VOICE = "en-us"
_ESPEAK_TIMEOUT_S = 10.0
_TIE = "^"

_TRIM_THRESHOLD = 0.01  # amplitude under which the model's lead-in/tail counts as silence
_LEAD_PAD_S = 0.03
_TAIL_PAD_S = 0.06
_PAUSE_AFTER_SENTENCE_S = 0.25
_PAUSE_AFTER_CLAUSE_S = 0.1
_WARM_UP_TEXT = "Hello."

# espeak-ng IPA -> misaki symbols, longest first (from misaki's EspeakFallback, American English).
_E2M = sorted(
    {
        "ʔˌn\u0329": "tᵊn", "ʔn\u0329": "tᵊn", "ʔn": "tᵊn", "ʔ": "t",
        "a^ɪ": "I", "a^ʊ": "W", "e^ɪ": "A", "e": "A", "o^ʊ": "O", "ɔ^ɪ": "Y",
        "d^ʒ": "ʤ", "t^ʃ": "ʧ", "ə^l": "ᵊl", "ɚ": "əɹ", "ɐ": "ə",
        "r": "ɹ", "x": "k", "ç": "k", "ɬ": "l", "ʲ": "", "g": "ɡ",
    }.items(),
    key=lambda kv: -len(kv[0]),
)
# Applied after the table above, in this order (American English vowel conventions of misaki).
_US_FIXES = (("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ː", ""), (_TIE, ""), ("ɪə", "iə"), ("o", "ɔ"),
             ("ɹɹ", "ɹ"))
_LANGUAGE_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)?\)")  # espeak's "(fr)...(en)" marks

# Text clean-up before splitting. Abbreviations are expanded so their dot does not end a clause.
_ABBREVIATIONS = {"mr": "Mister", "mrs": "Missus", "ms": "Miz", "dr": "Doctor", "vs": "versus",
                  "e.g": "for example", "i.e": "that is"}
_ABBREVIATION_RE = re.compile(r"\b(mrs|mr|ms|dr|vs|e\.g|i\.e)\.", re.IGNORECASE)
_DROPPED_CHARS = re.compile(r"[\"“”«»()\[\]{}<>*_#`|~]")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…])\s+|\s*\n\s*")
_CLAUSE_SPLIT = re.compile(r"([,.!?;:…—]+)(?=\s|$)")
# When a run of punctuation ends a clause, the first of these found in it is the one kept.
_PUNCT_PRIORITY = "?!….;:,—"
_SENTENCE_END = ".!?…"
_HAS_SOUND = re.compile(r"[^\s,.!?;:…—]")


class EspeakPhonemizer:
    """English text -> misaki phoneme string (with punctuation), via the `espeak-ng` binary."""

    def __init__(self, voice: str = _ESPEAK_VOICE) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise RuntimeError(
                "Kokoro TTS needs the espeak-ng program to phonemise English text, and it was not "
                "found on PATH; install it with `apt-get install espeak-ng`"
            )
        self._command = [binary, "-q", "--ipa", f"--tie={_TIE}", "-b", "1", "-v", voice]

    def phonemize(self, sentence: str) -> str:
        """Phonemes for one sentence; clause punctuation is kept so Kokoro can pause on it."""
        pieces: list[str] = []
        parts = _CLAUSE_SPLIT.split(sentence)
        for i in range(0, len(parts), 2):
            text = parts[i].strip()
            punct = _pick_punctuation(parts[i + 1]) if i + 1 < len(parts) else ""
            phonemes = espeak_to_misaki(self._espeak(text)) if _HAS_SOUND.search(text) else ""
            if phonemes:
                pieces.append(phonemes + punct)
            elif punct and pieces and pieces[-1][-1] not in _PUNCT_PRIORITY:
                pieces[-1] += punct
        return " ".join(pieces)

    def _espeak(self, text: str) -> str:
        """Raw espeak-ng IPA for `text` (fed on stdin, so text starting with '-' is safe)."""
        try:
            done = subprocess.run(
                self._command, input=text.encode("utf-8"), capture_output=True,
                timeout=_ESPEAK_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"espeak-ng took over {_ESPEAK_TIMEOUT_S:.0f} s on {text!r}") from e
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip()
            raise RuntimeError(f"espeak-ng failed (exit {done.returncode}) on {text!r}: {err}")
        return " ".join(done.stdout.decode("utf-8", "replace").split())


def espeak_to_misaki(ipa: str) -> str:
    """Rewrite espeak-ng IPA (with '^' ties) into the misaki symbols Kokoro was trained on.

    Diphthongs and affricates become misaki's one-letter symbols (aɪ -> I, tʃ -> ʧ, ...), length
    marks go, and syllabic consonants get misaki's small schwa (n̩ -> ᵊn).
    """
    ps = _LANGUAGE_SWITCH.sub("", ipa)
    for old, new in _E2M:
        ps = ps.replace(old, new)
    ps = re.sub(r"(\S)\u0329", r"ᵊ\1", ps).replace("\u0329", "")
    for old, new in _US_FIXES:
        ps = ps.replace(old, new)
    return " ".join(ps.split())


def normalize_text(text: str) -> str:
    """Tidy text for splitting: expand common abbreviations, unify ellipses and dashes, drop
    quotes/brackets/markdown marks that espeak-ng would ignore or spell out."""
    text = _ABBREVIATION_RE.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    text = text.replace("’", "'").replace("...", "…")
    text = re.sub(r"\s+[-–—]{1,2}\s+|—", " — ", text)
    text = _DROPPED_CHARS.sub(" ", text)
    return re.sub(r"[ \t\r\f\v]+", " ", text).strip()


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (split after . ! ? … followed by space, and at line breaks)."""
    return [s for s in (p.strip() for p in _SENTENCE_SPLIT.split(normalize_text(text))) if s]


def split_phonemes(phonemes: str, limit: int = MAX_TOKENS) -> list[str]:
    """Cut a phoneme string into pieces of at most `limit` symbols.

    Cuts prefer clause punctuation, then word gaps; a single word longer than `limit` (only
    possible with pathological input) is cut hard.
    """
    if len(phonemes) <= limit:
        return [phonemes]
    for gap in (r"(?<=[,.!?;:…—])\s+", r"\s+"):
        parts = [p for p in re.split(gap, phonemes) if p]
        if len(parts) > 1:
            chunks = _pack(parts, limit)
            return [piece for chunk in chunks for piece in split_phonemes(chunk, limit)]
    return [phonemes[i : i + limit] for i in range(0, len(phonemes), limit)]


def _pack(parts: list[str], limit: int) -> list[str]:
    """Greedily join consecutive `parts` with spaces into chunks of at most `limit` symbols."""
    chunks: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + 1 + len(part) > limit:
            chunks.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    if current:
        chunks.append(current)
    return chunks


def _pick_punctuation(run: str) -> str:
    """The one mark kept from a run such as '?!' or '.,' (questions win, then exclamations...)."""
    return next((p for p in _PUNCT_PRIORITY if p in run), "")


def _trim(audio: np.ndarray) -> np.ndarray:
    """Cut the model's silent lead-in and tail, keeping a few ms so onsets and decays survive."""
    loud = np.flatnonzero(np.abs(audio) > _TRIM_THRESHOLD)
    if loud.size == 0:
        return audio[:0]
    start = max(0, int(loud[0]) - int(_LEAD_PAD_S * SAMPLE_RATE))
    end = min(audio.size, int(loud[-1]) + int(_TAIL_PAD_S * SAMPLE_RATE))
    return audio[start:end]


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] -> 16-bit little-endian PCM bytes."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _load_vocab(vocab_path: Path) -> dict[str, int]:
    """Phoneme symbol -> token id, from Kokoro's vocab.json (`{"vocab": {...}}` or a bare map)."""
    data = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
    vocab = data.get("vocab", data)
    return {str(symbol): int(token) for symbol, token in vocab.items()}


def _load_voice(voices_path: Path, voice: str) -> np.ndarray:
    """Style vectors of `voice`, shape [n, 256]; row k suits an utterance of k + 1 tokens."""
    with np.load(voices_path, allow_pickle=False) as pack:
        if voice not in pack.files:
            available = ", ".join(sorted(pack.files))
            raise ValueError(f"unknown Kokoro voice {voice!r}; available voices: {available}")
        return np.asarray(pack[voice], dtype=np.float32).reshape(-1, STYLE_DIM)


def _require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Kokoro {what} file '{path}' does not exist")
    return path


class KokoroSynthesizer:
    """Kokoro-82M int8 ONNX text-to-speech for English, with espeak-ng phonemes.

    `synthesize` is blocking and meant to run in a worker thread; it yields 24 kHz mono 16-bit
    PCM, one chunk per sentence (or per piece of an over-long sentence), each followed by a short
    pause so that consecutive chunks can simply be played back to back.
    """

    def __init__(
        self,
        *,
        model_path: Path,
        voices_path: Path,
        vocab_path: Path,
        voice: str = "jf_alpha",
        speed: float = 1.0,
        num_threads: int = 1,
        compute: ComputeArbiter | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"Kokoro speed must be positive, got {speed}")
        self._vocab = _load_vocab(_require_file(vocab_path, "vocab"))
        self._style = _load_voice(_require_file(voices_path, "voices"), voice)
        self._phonemizer = EspeakPhonemizer()
        self._speed = np.array([speed], dtype=np.float32)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, num_threads)
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: the cores go to whoever computes next.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        started = time.perf_counter()
        self._session = ShrinkingSession(ort.InferenceSession(
            str(_require_file(model_path, "model")), sess_options=options,
            providers=["CPUExecutionProvider"],
        ), compute or ComputeArbiter())
        self.name = f"kokoro-82m-int8/{voice}"
        self.sample_rate = SAMPLE_RATE
        logger.info("Loaded {} in {:.2f} s ({} threads)", self.name,
                    time.perf_counter() - started, options.intra_op_num_threads)

    def synthesize(self, text: str, speed: float = 1.0) -> Iterator[bytes]:
        """Speak `text`, `speed` times the voice's set speed: yields 16-bit LE mono PCM at
        `sample_rate`, one chunk per sentence."""
        for sentence in split_sentences(text):
            phonemes = self._phonemizer.phonemize(sentence)
            symbols = self._to_symbols(phonemes)
            if not _HAS_SOUND.search(symbols):
                continue
            pieces = split_phonemes(symbols)
            for i, piece in enumerate(pieces):
                audio = _trim(self._infer(piece, speed))
                if audio.size == 0:
                    continue
                final = i == len(pieces) - 1 and sentence[-1] in _SENTENCE_END
                pause = _PAUSE_AFTER_SENTENCE_S if final else _PAUSE_AFTER_CLAUSE_S
                yield to_pcm16(audio) + bytes(2 * int(pause * SAMPLE_RATE))

    def warm_up(self) -> None:
        """Synthesize a short phrase once, so the first real reply does not pay for ONNX Runtime's
        lazy initialisation (memory arenas, kernel selection)."""
        started = time.perf_counter()
        produced = sum(len(chunk) for chunk in self.synthesize(_WARM_UP_TEXT))
        logger.info("Warmed up {} in {:.2f} s ({:.2f} s of audio)", self.name,
                    time.perf_counter() - started, produced / 2 / SAMPLE_RATE)

    def _to_symbols(self, phonemes: str) -> str:
        """Keep only the symbols the vocab knows (unknown ones are logged and dropped)."""
        unknown = {c for c in phonemes if c not in self._vocab}
        if unknown:
            logger.debug("Kokoro: dropping phonemes not in the vocab: {}", "".join(sorted(unknown)))
        return "".join(c for c in phonemes if c in self._vocab).strip()

    def _infer(self, symbols: str, speed: float = 1.0) -> np.ndarray:
        """Run the model on one phoneme string of at most MAX_TOKENS symbols -> float audio."""
        tokens = [self._vocab[c] for c in symbols]
        style = self._style[min(len(tokens), len(self._style)) - 1].reshape(1, STYLE_DIM)
        started = time.perf_counter()
        (audio,) = self._session.run(
            ["audio"],
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": style,
                "speed": self._speed * np.float32(speed),
            },
        )
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        elapsed = time.perf_counter() - started
        seconds = audio.size / SAMPLE_RATE
        logger.debug("Kokoro: {} tokens -> {:.2f} s audio in {:.2f} s (RTF {:.2f}): {}",
                     len(tokens), seconds, elapsed, elapsed / max(seconds, 1e-6), symbols)
        return audio
